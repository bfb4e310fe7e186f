"""Several messages of one conversation in a short window become one push.

The first message of a (user, conversation) opens a window; what arrives
before it closes is counted into it; when it closes, one push says how many.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bridge.wire.messaging import StoredMessage

Flush = Callable[[str, int, StoredMessage], Awaitable[None]]


@dataclass
class _Window:
    count: int
    last: StoredMessage


class Collapser:
    def __init__(
        self, window_seconds: float, flush: Flush, spawn: Callable[[Awaitable[None], str], object]
    ) -> None:
        self._window = window_seconds
        self._flush = flush
        self._spawn = spawn
        self._open: dict[tuple[str, str], _Window] = {}

    def add(self, user_id: str, message: StoredMessage) -> None:
        key = (user_id, message.conv_id)
        window = self._open.get(key)
        if window is not None:
            window.count += 1
            if message.seq > window.last.seq:
                window.last = message
            return
        self._open[key] = _Window(1, message)
        asyncio.get_running_loop().call_later(self._window, self._close, key)

    def _close(self, key: tuple[str, str]) -> None:
        window = self._open.pop(key)
        self._spawn(self._flush(key[0], window.count, window.last), f"push:{key[0]}")
