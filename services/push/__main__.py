"""`python -m services.push`: run one push instance."""

from __future__ import annotations

import asyncio
import signal

from bridge.mqtt import Endpoint
from bridge.service import ServiceRuntime
from core.config import get_settings
from core.database import Database
from core.logs import setup_logging
from services.push.expo import ExpoSender
from services.push.service import PushService


async def main() -> None:
    settings = get_settings()
    setup_logging(settings.log_level, f"push-{settings.instance}")
    db = Database(settings.effective_database_url)
    runtime = ServiceRuntime(
        "push",
        settings.instance,
        Endpoint(settings.mqtt_host, settings.mqtt_tcp_port),
        username=settings.mqtt_service_username,
        password=settings.mqtt_service_password,
    )
    service = PushService(
        runtime, db, settings, ExpoSender(settings.expo_api_url, settings.expo_access_token)
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runtime.spawn(_start_when_ready(runtime, service), "start-background")
    try:
        await runtime.run(stop)
    finally:
        service.stop_background()
        await db.close()


async def _start_when_ready(runtime: ServiceRuntime, service: PushService) -> None:
    await runtime.ready.wait()
    service.start_background()


if __name__ == "__main__":
    asyncio.run(main())
