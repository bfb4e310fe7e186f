"""Shared fixtures: a real database (SQLite or PostgreSQL, by `--db`), and the whole
system started as real processes (broker with the project's config, API,
two instances of each service) on free ports.

The PostgreSQL leg never skips: if no server answers, the session fails.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tools.expo_double import ExpoDouble
from tools.livekit_double import LiveKitDouble
from tools.stack import Stack, StackConfig

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--db",
        choices=["sqlite", "postgresql"],
        default="sqlite",
        help="database the system runs on in this session",
    )


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def db_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.config.getoption("--db")
    return kind


def _replace_db(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="session")
def database_factory(db_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Makes fresh, empty databases; PostgreSQL ones are dropped at the end."""
    created: list[str] = []
    admin_url = os.environ.get("TEST_POSTGRES_URL", DEFAULT_PG)

    def make() -> str:
        if db_kind == "sqlite":
            return f"sqlite:///{tmp_path_factory.mktemp('db') / 'chat.db'}"
        name = f"chat_test_{secrets.token_hex(6)}"
        try:
            with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.OperationalError as exc:
            pytest.fail(f"PostgreSQL leg: no server at {admin_url}: {exc}")
        created.append(name)
        return _replace_db(admin_url, name)

    yield make
    for name in created:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


# The suite's clients send and log in far faster than people do; the limits
# themselves are tested with their own stack (tests/integration/test_limits.py).
UNLIMITED = {
    "MESSAGE_RATE_PER_SECOND": "1000000",
    "MESSAGE_RATE_BURST": "1000000",
    "LOGIN_ATTEMPTS_PER_MINUTE": "1000000",
    "REGISTRATIONS_PER_HOUR": "1000000",
}


def start_stack(
    database_url: str,
    data_dir: Path,
    instances: int = 2,
    callsig_instances: int = 2,
    router_instances: int = 2,
    presence_instances: int = 2,
    push_instances: int = 2,
    livekit: LiveKitDouble | None = None,
    **extra: str,
) -> Stack:
    config = StackConfig(
        data_dir=data_dir,
        database_url=database_url,
        persistence_instances=instances,
        callsig_instances=callsig_instances,
        router_instances=router_instances,
        presence_instances=presence_instances,
        push_instances=push_instances,
        extra_env={**UNLIMITED, **extra},
    )
    if livekit is not None:
        config.livekit_api_key = livekit.api_key
        config.livekit_api_secret = livekit.api_secret
        config.extra_env["LIVEKIT_API_URL"] = livekit.url
    stack = Stack(config)
    try:
        stack.start()
    except BaseException:
        stack.stop()
        raise
    return stack


def single_stack(database_url: str, data_dir: Path, **settings: str) -> Stack:
    """One instance of each service (counts that depend on one instance are
    exact), with settings of its own."""
    return start_stack(
        database_url,
        data_dir,
        instances=1,
        callsig_instances=1,
        router_instances=1,
        presence_instances=1,
        push_instances=1,
        **settings,
    )


@pytest.fixture(scope="session")
def livekit() -> Iterator[LiveKitDouble]:
    """LiveKit's server API, as a double (no LiveKit server can run here)."""
    with LiveKitDouble("devkey", secrets.token_urlsafe(32)) as double:
        yield double


@pytest.fixture(scope="session")
def expo() -> Iterator[ExpoDouble]:
    """Expo's push API, as a double (Expo cannot be reached from here)."""
    with ExpoDouble() as double:
        yield double


@pytest.fixture(scope="session")
def stack(
    database_factory: object,
    tmp_path_factory: pytest.TempPathFactory,
    livekit: LiveKitDouble,
    expo: ExpoDouble,
) -> Iterator[Stack]:
    """The shared system: two instances of each service, so shared subscriptions
    are exercised by every test; server-side recording on."""
    url = database_factory()  # type: ignore[operator]
    running = start_stack(
        url,
        tmp_path_factory.mktemp("stack"),
        livekit=livekit,
        RECORDING_ENABLED="true",
        PRESENCE_OFFLINE_DEBOUNCE_SECONDS="2",
        EXPO_API_URL=expo.url,
        PUSH_RECEIPT_CHECK_SECONDS="1",
    )
    yield running
    running.stop()
