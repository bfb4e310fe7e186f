"""Group commit for the persistence service.

`BatchWriter`: messages queue in arrival order and are stored a batch per
transaction, one batch at a time, so items of a conversation keep their order;
while a batch is in the database the next one fills up. At low rates a batch is
one message and adds no wait. The store function is the caller's (on
PostgreSQL's fast path a statement on a connection of its own, otherwise
through `core.database.Database`); it waits out database outages itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from core import metrics

log = logging.getLogger(__name__)

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


class BatchWriter(Generic[ItemT, ResultT]):
    def __init__(
        self,
        store: Callable[[Sequence[ItemT]], Awaitable[list[ResultT]]],
        *,
        batch_max: int,
    ) -> None:
        self._store = store
        self._batch_max = batch_max
        self._queue: list[tuple[ItemT, asyncio.Future[ResultT]]] = []
        self._wakeup = asyncio.Event()
        metrics.STORE_QUEUE.set_function(lambda: len(self._queue))

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
        started = time.perf_counter()
        try:
            outcomes = await self._store(items)
        except Exception as exc:
            # Not an outage (those are retried above): a bug or a constraint we
            # did not foresee. Each caller gets the error and logs it.
            log.exception("storing a batch of %d failed", len(items))
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        metrics.STORE_BATCH_SECONDS.observe(time.perf_counter() - started)
        metrics.STORE_BATCH_SIZE.observe(len(items))
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if not future.done():
                future.set_result(outcome)
