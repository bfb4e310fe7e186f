"""The FastAPI application and its lifespan (database, broker connection, storage)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI
from prometheus_fastapi_instrumentator import Instrumentator

from api.dashboard_files import mount_dashboard
from api.deps import AppState, ThreadRunner
from api.errors import install_error_handlers
from api.limits import ApiLimits
from api.media.storage import LocalDiskStorage
from api.routes import (
    auth,
    calls,
    conversations,
    devices,
    livekit,
    media,
    messages,
    support,
    users,
)
from bridge.mqtt import AsyncMqtt, Endpoint
from bridge.provisioning import Provisioner
from core import metrics
from core.config import Settings, get_settings
from core.db import make_engine
from core.logs import setup_logging
from services.support_router.notify import Notifier, wake_router
from services.support_router.service import rules_from

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        setup_logging(settings.log_level, f"api-{settings.instance}", settings.log_format)
        for problem in dashboard_problems:
            log.warning("dashboard: %s", problem)
        # A request waits at most 10 s for a database connection, then gets 503 busy.
        engine = make_engine(settings.effective_database_url, pool_timeout=10.0)
        mqtt = AsyncMqtt(
            Endpoint(settings.mqtt_host, settings.mqtt_tcp_port),
            client_id=f"api-{settings.instance}",
            username=settings.mqtt_admin_username,
            password=settings.mqtt_admin_password,
            # The API keeps no work in its session: it only publishes and asks.
            clean_start=True,
            session_expiry=0,
        )
        await mqtt.connect()
        provisioner = Provisioner(mqtt)
        await provisioner.start()
        storage = LocalDiskStorage(settings.effective_media_dir)
        # The routers build the live views; the API wakes one when they change.
        support = Notifier(
            mqtt,
            ThreadRunner(engine),
            rules_from(settings),
            views_elsewhere=partial(wake_router, mqtt),
        )
        app.state.chat = AppState(
            settings, engine, mqtt, provisioner, storage, support, ApiLimits.from_settings(settings)
        )
        try:
            yield
        finally:
            await provisioner.stop()
            await mqtt.disconnect()
            engine.dispose()

    app = FastAPI(title="Marketplace chat API", version="1", lifespan=lifespan)
    install_error_handlers(app)
    for module in (auth, devices, conversations, messages, media, calls, livekit, users, support):
        app.include_router(module.router)
    dashboard_problems = mount_dashboard(app)
    # Request counts and latency per route template (never per raw path, so ids
    # cannot explode the series), plus the process's own chat_* figures.
    Instrumentator(
        excluded_handlers=["/metrics", "/healthz"], should_group_status_codes=False
    ).instrument(
        app,
        latency_highr_buckets=metrics.LATENCY_BUCKETS,
        latency_lowr_buckets=metrics.LATENCY_BUCKETS,
    ).expose(app, include_in_schema=False, tags=["ops"])

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
