"""Group commit: messages queue here and are stored a batch at a time.

One batch runs at a time per process, on a single database thread, so items of a
conversation keep their arrival order; while a batch is in the database the next
one fills up. Under load batches grow (fewer commits per message); at low rates a
batch is one message and adds no wait.

A database outage does not lose anything: the batch is retried with backoff and
its MQTT messages stay unacknowledged until it commits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

log = logging.getLogger(__name__)

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


class DatabaseThread:
    """The one thread this process talks to the database on, with retry for outages."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="db")

    async def run(self, func: Callable[..., ResultT], *args: object) -> ResultT:
        loop = asyncio.get_running_loop()
        delay = 0.05
        while True:
            try:
                return await loop.run_in_executor(self._executor, func, self.engine, *args)
            except (OperationalError, DBAPIError) as exc:
                if not _is_transient(exc):
                    raise
                log.warning("database unavailable (%s); retrying in %.2fs", exc.orig, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    def close(self) -> None:
        self._executor.shutdown(wait=True)


def _is_transient(exc: DBAPIError) -> bool:
    # Lost connections, a server restarting, SQLite's lock timeout. Integrity and
    # programming errors are bugs or bad data: retrying cannot help.
    return isinstance(exc, OperationalError) or exc.connection_invalidated


class BatchWriter(Generic[ItemT, ResultT]):
    def __init__(
        self,
        db: DatabaseThread,
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
