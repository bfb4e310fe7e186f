"""What every service process does around its own work: settings, logging, the
database, the broker runtime, signals, and an orderly stop.

    python -m services.persistence   (and callsig, presence, push)

each of which is `run(name, build)` with a `build` that wires its handlers into
the runtime and returns the service.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from typing import Protocol

from prometheus_client import start_http_server

from bridge import topics
from bridge.mqtt import Endpoint
from bridge.service import ServiceRuntime
from core import metrics
from core.config import Settings, get_settings
from core.database import Database
from core.logs import setup_logging

log = logging.getLogger(__name__)


class Service(Protocol):
    def start_background(self) -> None:
        """Start timers and background tasks, once connected and subscribed."""

    async def stop(self) -> None:
        """Release what the service holds (the runtime and database are closed after)."""


Build = Callable[[ServiceRuntime, Database, Settings], Service]


def run(name: str, build: Build) -> None:
    asyncio.run(_main(name, build))


async def _main(name: str, build: Build) -> None:
    settings = get_settings()
    setup_logging(settings.log_level, f"{name}-{settings.instance}", settings.log_format)
    db = Database(settings.effective_database_url)
    runtime = ServiceRuntime(
        name,
        settings.instance,
        Endpoint(settings.mqtt_host, settings.mqtt_tcp_port),
        username=settings.mqtt_service_username,
        password=settings.mqtt_service_password,
    )
    service = build(runtime, db, settings)
    metrics.watch_runtime(runtime)
    if settings.metrics_port:
        # A thread of prometheus_client's: scrapes never wait on the event loop.
        start_http_server(settings.metrics_port)
        log.info("metrics on :%d/metrics", settings.metrics_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runtime.spawn(_start_when_ready(runtime, service), "start-background")
    runtime.spawn(_publish_metrics(runtime, settings.metrics_publish_seconds), "metrics")
    try:
        await runtime.run(stop)
    finally:
        await service.stop()
        await db.close()


async def _start_when_ready(runtime: ServiceRuntime, service: Service) -> None:
    await runtime.ready.wait()
    service.start_background()


async def _publish_metrics(runtime: ServiceRuntime, every_seconds: float) -> None:
    """Retained, so `mosquitto_sub -t 'svc/+/+/metrics'` shows every instance at once."""
    topic = topics.service_metrics(runtime.name, runtime.instance)
    while True:
        await runtime.mqtt.connected.wait()
        runtime.mqtt.publish(topic, metrics.summary(), qos=0, retain=True)
        await asyncio.sleep(every_seconds)
