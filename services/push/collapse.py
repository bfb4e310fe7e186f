"""Several messages of one conversation in a short window become one push.

The first message of a (user, conversation) opens a window; what arrives
before it closes is counted into it. Windows that close together are handed
over as one batch, so a message to many offline members costs a few requests to
Expo (100 pushes each), not one per member.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bridge.wire.messaging import StoredMessage


@dataclass
class Due:
    """A closed window: `count` messages for `user_id`, the newest `last`."""

    user_id: str
    count: int
    last: StoredMessage


Flush = Callable[[list[Due]], Awaitable[None]]


class Collapser:
    def __init__(self, window_seconds: float, flush: Flush) -> None:
        self._window = window_seconds
        self._flush = flush
        self._open: dict[tuple[str, str], Due] = {}
        self._due: list[Due] = []
        self._wakeup = asyncio.Event()

    def add(self, user_id: str, message: StoredMessage) -> None:
        key = (user_id, message.conv_id)
        window = self._open.get(key)
        if window is not None:
            window.count += 1
            if message.seq > window.last.seq:
                window.last = message
            return
        self._open[key] = Due(user_id, 1, message)
        asyncio.get_running_loop().call_later(self._window, self._close, key)

    def _close(self, key: tuple[str, str]) -> None:
        self._due.append(self._open.pop(key))
        self._wakeup.set()

    async def run(self) -> None:
        """Hand closed windows to `flush`, a batch at a time."""
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            batch, self._due = self._due, []
            if batch:
                await self._flush(batch)
