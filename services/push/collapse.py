"""Several messages of one conversation in a short window become one push.

The windows live in the database (services/push/windows.py), so all push
instances count into the same window whichever of them receives a message.
The instance that opens a window closes it when its time is up; every instance
also sweeps, now and then, the windows overdue by more than
`TAKEOVER_GRACE` (their opener was killed or stopped) and closes them. Closing
takes the window out of the table, so one push goes out per window, sent by
one instance. Windows that close together are handed over as one batch, so a
message to many offline members costs a few requests to Expo (100 pushes
each), not one per member.

A window taken by an instance that dies before Expo accepted its push is lost:
never pushed twice was chosen over never lost, for a notification.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta

from bridge.wire.messaging import StoredMessage
from core.database import Database
from core.timefmt import utcnow
from services.push import windows
from services.push.windows import Due

# How often each instance looks for windows whose opener is gone, and how far
# past due a window must be for another instance to take it over (its opener's
# own timer closes it at once when the opener runs).
SWEEP_SECONDS = 1.0
TAKEOVER_GRACE = timedelta(seconds=1)

Flush = Callable[[list[Due]], Awaitable[None]]


class Collapser:
    def __init__(self, db: Database, window_seconds: float, flush: Flush) -> None:
        self._db = db
        self._window = window_seconds
        self._flush = flush
        self._closing: list[tuple[str, str]] = []  # (user, conversation) windows now due
        self._wakeup = asyncio.Event()

    async def add(self, message: StoredMessage, user_ids: Sequence[str]) -> None:
        """Count the message into each user's window (opening those not open)."""
        due = utcnow() + timedelta(seconds=self._window)
        opened = await self._db.run(windows.count_in, message, user_ids, due)
        loop = asyncio.get_running_loop()
        for user_id in opened:
            loop.call_later(self._window, self._close, (user_id, message.conv_id))

    def _close(self, key: tuple[str, str]) -> None:
        self._closing.append(key)
        self._wakeup.set()

    async def run(self) -> None:
        """Close the windows this instance opened when due, sweep the orphaned
        ones, and hand what closed to `flush`, a batch at a time."""
        next_sweep = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), max(0.0, next_sweep - time.monotonic()))
            self._wakeup.clear()
            keys, self._closing = self._closing, []
            batch = await self._db.run(windows.take, keys) if keys else []
            if time.monotonic() >= next_sweep:
                batch += await self._db.run(windows.take_overdue, utcnow() - TAKEOVER_GRACE)
                next_sweep = time.monotonic() + SWEEP_SECONDS
            if batch:
                await self._flush(batch)
