"""`python -m services.presence`: run the presence tracker."""

from __future__ import annotations

import asyncio
import signal

from bridge.mqtt import Endpoint
from bridge.service import ServiceRuntime
from core.config import get_settings
from core.database import Database
from core.logs import setup_logging
from services.presence.service import PresenceTracker


async def main() -> None:
    settings = get_settings()
    setup_logging(settings.log_level, f"presence-{settings.instance}")
    db = Database(settings.effective_database_url)
    runtime = ServiceRuntime(
        "presence",
        settings.instance,
        Endpoint(settings.mqtt_host, settings.mqtt_tcp_port),
        username=settings.mqtt_service_username,
        password=settings.mqtt_service_password,
    )
    PresenceTracker(runtime, db, settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await runtime.run(stop)
    finally:
        await db.close()


if __name__ == "__main__":
    asyncio.run(main())
