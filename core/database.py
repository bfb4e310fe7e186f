"""Running synchronous database code from a service's event loop, without a thread.

The services' store code is plain synchronous SQLAlchemy; it runs:
- on PostgreSQL, through SQLAlchemy's asyncio engine (psycopg's async mode)
  inside `greenlet_spawn`, so each round trip awaits and the loop keeps serving
  the broker meanwhile;
- on SQLite, inline: a local transaction takes a fraction of a millisecond,
  less than handing it to a thread and back would cost.
Why not a worker thread: every hand-over between the loop and a database thread
waits for the GIL, which measured ~1 ms per message (docs/architecture.md).

A database outage loses nothing: transient errors are retried with backoff, and
the caller's MQTT message stays unacknowledged until its work commits.

On PostgreSQL at most `pool_size` store calls run at once; the rest wait their
turn on the loop. Without that gate a burst of concurrent handlers overflows
the pool, and every overflow connection is opened and closed again around one
query: a server process forked per message, which cost more CPU than the query
(measured: a third of a core at 300 msg/s in the push service alone).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.util import greenlet_spawn

from core.db import is_sqlite, make_engine, normalise_url, postgres_connect_args

log = logging.getLogger(__name__)

ResultT = TypeVar("ResultT")


class Database:
    """Runs synchronous store functions `func(engine, *args)` without a thread."""

    def __init__(self, url: str, *, pool_size: int = 5) -> None:
        self._async: AsyncEngine | None = None
        self._turns = asyncio.Semaphore(pool_size)
        if is_sqlite(normalise_url(url)):
            self.engine: Engine = make_engine(url, pre_ping=False)
        else:
            self._async = create_async_engine(
                normalise_url(url),
                pool_size=pool_size,
                max_overflow=pool_size,
                connect_args=postgres_connect_args(url),
            )
            self.engine = self._async.sync_engine

    async def run(self, func: Callable[..., ResultT], *args: object) -> ResultT:
        delay = 0.05
        while True:
            try:
                if self._async is not None:
                    async with self._turns:
                        result: ResultT = await greenlet_spawn(func, self.engine, *args)
                    return result
                return func(self.engine, *args)
            except (OperationalError, DBAPIError) as exc:
                if not _is_transient(exc):
                    raise
                log.warning("database unavailable (%s); retrying in %.2fs", exc.orig, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def close(self) -> None:
        if self._async is not None:
            await self._async.dispose()
        else:
            self.engine.dispose()


def _is_transient(exc: DBAPIError) -> bool:
    # Lost connections, a server restarting, SQLite's lock timeout. Integrity and
    # programming errors are bugs or bad data: retrying cannot help.
    return isinstance(exc, OperationalError) or exc.connection_invalidated
