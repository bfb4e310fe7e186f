"""The database as the persistence service uses it, and group commit.

Everything runs on the event loop's thread. The store's code is plain
synchronous SQLAlchemy; it runs:
- on PostgreSQL, through SQLAlchemy's asyncio engine (psycopg's async mode)
  inside `greenlet_spawn`, so each round trip awaits and the loop keeps serving
  the broker meanwhile;
- on SQLite, inline: a local transaction takes a fraction of a millisecond,
  less than handing it to a thread and back would cost.
Why not a worker thread: every hand-over between the loop and a database thread
waits for the GIL, which measured ~1 ms per message (docs/architecture.md).

`BatchWriter`: messages queue in arrival order and are stored a batch per
transaction, one batch at a time, so items of a conversation keep their order;
while a batch is in the database the next one fills up. At low rates a batch is
one message and adds no wait.

A database outage loses nothing: the batch is retried with backoff and its MQTT
messages stay unacknowledged until it commits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.util import greenlet_spawn

from core.db import is_sqlite, make_engine, normalise_url

log = logging.getLogger(__name__)

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


class Database:
    """Runs synchronous store functions `func(engine, *args)` without a thread."""

    def __init__(self, url: str, *, pool_size: int = 5) -> None:
        self._async: AsyncEngine | None = None
        if is_sqlite(normalise_url(url)):
            self.engine: Engine = make_engine(url, pre_ping=False)
        else:
            self._async = create_async_engine(
                normalise_url(url), pool_size=pool_size, max_overflow=pool_size
            )
            self.engine = self._async.sync_engine

    async def run(self, func: Callable[..., ResultT], *args: object) -> ResultT:
        delay = 0.05
        while True:
            try:
                if self._async is not None:
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


class BatchWriter(Generic[ItemT, ResultT]):
    def __init__(
        self,
        db: Database,
        store: Callable[[Engine, Sequence[ItemT]], list[ResultT]],
        *,
        batch_max: int,
    ) -> None:
        self._db = db
        self._store = store
        self._batch_max = batch_max
        self._queue: list[tuple[ItemT, asyncio.Future[ResultT]]] = []
        self._wakeup = asyncio.Event()

    def submit(self, item: ItemT) -> asyncio.Future[ResultT]:
        """Queue an item (order-preserving; no await); the future gets its outcome."""
        future: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        self._wakeup.set()
        return future

    async def run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                batch = self._queue[: self._batch_max]
                del self._queue[: self._batch_max]
                await self._store_batch(batch)

    async def _store_batch(self, batch: list[tuple[ItemT, asyncio.Future[ResultT]]]) -> None:
        items = [item for item, _ in batch]
        try:
            outcomes = await self._db.run(self._store, items)
        except Exception as exc:
            # Not an outage (those are retried above): a bug or a constraint we
            # did not foresee. Each caller gets the error and logs it.
            log.exception("storing a batch of %d failed", len(items))
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if not future.done():
                future.set_result(outcome)
