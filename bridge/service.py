"""The service runtime: one instance of a named service on the broker.

What every service gets from here:
- a fixed client id `<name>-<instance>` with a persistent session (clean start
  off), so QoS 1 messages wait in the broker while the instance restarts;
- shared subscriptions `$share/<name>/...`, so instances split the load;
- acknowledgement after the handler returns (the handler commits first): a
  crash before that makes the broker deliver the message again;
- a retained `svc/<name>/<instance>/status` (online) with a Last Will (offline);
- reconnect with backoff, forever.

Handlers are called in arrival order, each in its own task. Invariant that
ordering relies on: a handler does its order-sensitive step (e.g. queueing into a
batch) before its first `await`, since tasks start in the order they were made.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bridge import topics
from bridge.mqtt import AsyncMqtt, ConnectFailed, Endpoint, Inbound, NotAuthorized, Will
from bridge.wire.service import ServiceStatus
from core import metrics
from core.timefmt import to_wire, utcnow

log = logging.getLogger(__name__)

Handler = Callable[[Inbound], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Route:
    topic_filter: str
    qos: int
    handler: Handler
    shared: bool = True


class ServiceRuntime:
    def __init__(
        self,
        name: str,
        instance: str,
        endpoint: Endpoint,
        *,
        username: str,
        password: str,
    ) -> None:
        self.name = name
        self.instance = instance
        self.routes: list[Route] = []
        self.since = to_wire(utcnow())
        offline = self._status(online=False)
        self.mqtt = AsyncMqtt(
            endpoint,
            client_id=f"{name}-{instance}",
            username=username,
            password=password,
            clean_start=False,
            manual_ack=True,
            will=Will(topics.service_status(name, instance), offline, qos=1, retain=True),
        )
        self.ready = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    def _status(self, *, online: bool) -> bytes:
        status = ServiceStatus(
            online=online, service=self.name, instance=self.instance, since=self.since
        )
        return status.model_dump_json().encode()

    def route(self, topic_filter: str, qos: int, handler: Handler, *, shared: bool = True) -> None:
        self.routes.append(Route(topic_filter, qos, handler, shared))

    @property
    def task_count(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Awaitable[None], name: str) -> asyncio.Task[None]:
        """A named background task owned by the runtime (cancelled on stop)."""

        async def wrapper() -> None:
            await coro

        task = asyncio.get_running_loop().create_task(wrapper(), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s failed", task.get_name(), exc_info=task.exception())

    async def _connect_forever(self) -> None:
        delay = 0.2
        while True:
            try:
                await self.mqtt.connect()
                return
            except NotAuthorized:
                raise
            except ConnectFailed as exc:
                log.warning(
                    "%s-%s: broker not reachable (%s); retrying", self.name, self.instance, exc
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _keep_status(self) -> None:
        topic = topics.service_status(self.name, self.instance)
        while True:
            await self.mqtt.connected.wait()
            await self.mqtt.publish(topic, self._status(online=True), qos=1, retain=True)
            await self.mqtt.disconnected.wait()

    async def run(self, stop: asyncio.Event) -> None:
        await self._connect_forever()
        filters = [
            (topics.shared(self.name, r.topic_filter) if r.shared else r.topic_filter, r.qos)
            for r in self.routes
        ]
        codes = await self.mqtt.subscribe(filters)
        refused = [f for (f, _q), code in zip(filters, codes, strict=True) if code >= 0x80]
        if refused:
            raise NotAuthorized(f"subscriptions refused: {refused}")
        self.spawn(self._keep_status(), "status")
        self.spawn(self._dispatch(), "dispatch")
        self.ready.set()
        # Everything made while starting (modules, SQLAlchemy and pydantic
        # machinery) lives as long as the process. Left to the cyclic GC, each
        # full collection walked it all: 60 ms pauses, measured in the bench.
        gc.freeze()
        log.info("%s-%s running: %s", self.name, self.instance, [f for f, _ in filters])
        await stop.wait()
        await self.shutdown()

    async def shutdown(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        topic = topics.service_status(self.name, self.instance)
        try:
            await asyncio.wait_for(
                self.mqtt.publish(topic, self._status(online=False), qos=1, retain=True), 2
            )
        except TimeoutError:
            log.warning("offline status not acknowledged")
        await self.mqtt.disconnect()

    async def _dispatch(self) -> None:
        async for message in self.mqtt.messages():
            route = next(
                (r for r in self.routes if topics.matches(r.topic_filter, message.topic)), None
            )
            if route is None:
                log.warning("no handler for %s; acknowledged and dropped", message.topic)
                message.ack()
                continue
            self.spawn(self._handle(route, message), f"handle:{message.topic}")

    async def _handle(self, route: Route, message: Inbound) -> None:
        started = time.perf_counter()
        try:
            await route.handler(message)
        except asyncio.CancelledError:
            raise  # shutting down: not acknowledged, the broker delivers it again
        except Exception:
            # A bug, not bad input (handlers answer bad input themselves). It is
            # logged with the topic and acknowledged, so it cannot block the queue.
            log.exception("handler for %s failed; message acknowledged", message.topic)
            metrics.HANDLER_ERRORS.labels(route.topic_filter).inc()
        message.ack()
        metrics.HANDLED.labels(route.topic_filter).inc()
        metrics.HANDLER_SECONDS.labels(route.topic_filter).observe(time.perf_counter() - started)
