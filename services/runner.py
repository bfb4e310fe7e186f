"""What every service process does around its own work: settings, logging, the
database, the broker runtime, signals, and an orderly stop.

    python -m services.persistence   (and callsig, presence, push)

each of which is `run(name, build)` with a `build` that wires its handlers into
the runtime and returns the service.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from typing import Protocol

from bridge.mqtt import Endpoint
from bridge.service import ServiceRuntime
from core.config import Settings, get_settings
from core.database import Database
from core.logs import setup_logging


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
    setup_logging(settings.log_level, f"{name}-{settings.instance}")
    db = Database(settings.effective_database_url)
    runtime = ServiceRuntime(
        name,
        settings.instance,
        Endpoint(settings.mqtt_host, settings.mqtt_tcp_port),
        username=settings.mqtt_service_username,
        password=settings.mqtt_service_password,
    )
    service = build(runtime, db, settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runtime.spawn(_start_when_ready(runtime, service), "start-background")
    try:
        await runtime.run(stop)
    finally:
        await service.stop()
        await db.close()


async def _start_when_ready(runtime: ServiceRuntime, service: Service) -> None:
    await runtime.ready.wait()
    service.start_background()
