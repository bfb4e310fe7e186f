"""Engine creation and schema migration for SQLite (default) and PostgreSQL.

SQLite runs in WAL mode with a busy timeout, so several processes (the API and
several persistence instances) can share one file; writers take the lock up
front (`BEGIN IMMEDIATE`) so two writers never deadlock on a lock upgrade.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, make_url

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def normalise_url(url: str) -> str:
    """Accept `postgresql://` and `postgres://` and pick the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def make_engine(
    url: str, *, pool_size: int = 5, pre_ping: bool = True, pool_timeout: float = 30.0
) -> Engine:
    """`pre_ping` tests each pooled connection before use (a round trip): right
    for the API, wasted on a service that retries failed batches anyway.
    `pool_timeout`: how long a caller waits for a pooled connection before
    sqlalchemy's TimeoutError (the API answers it 503 busy)."""
    url = normalise_url(url)
    if is_sqlite(url):
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        _tune_sqlite(engine)
        return engine
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=pre_ping,
        pool_timeout=pool_timeout,
        connect_args=postgres_connect_args(url),
    )


# The hot queries find their rows through an index (by id, by member, by
# conversation and seq), so a sequential scan there is a planning mistake: one
# made from stale statistics. psycopg prepares a statement after a few runs and
# PostgreSQL may then keep one generic plan for good; a plan made while a table
# was nearly empty (a new database, before autovacuum's first ANALYZE, or with
# autovacuum off) scans the whole table on every run. Measured on the store
# statement: 0.7 ms with 50 messages stored, 5.0 ms with 50,000, and 0.65 ms at
# both sizes with sequential scans off. The setting only steers the planner: a
# query with no index to serve it (the operators' list, the sweeps) still scans.
# But it does so at a penalty cost far above `jit_above_cost`, so PostgreSQL
# would compile every such query to machine code first: 30 ms to 1 s each,
# measured (ticket routing went from 4 ms to 770 ms). Queries this small never
# gain from JIT: it is off.
POSTGRES_OPTIONS = "-c enable_seqscan=off -c jit=off"


def postgres_connect_args(url: str) -> dict[str, str]:
    """psycopg's connect arguments: the planner options, after any in the URL."""
    given = make_url(url).query.get("options")
    if isinstance(given, tuple):
        given = " ".join(given)
    return {"options": f"{given} {POSTGRES_OPTIONS}" if given else POSTGRES_OPTIONS}


def _tune_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A connection for reads outside any write.

    On PostgreSQL in autocommit: no BEGIN before and no ROLLBACK after (two
    round trips fewer), and above all no ROLLBACK, which makes psycopg drop the
    connection's prepared statements, so every query was planned anew (a
    millisecond for a four-table join, measured). On SQLite a plain connection.
    """
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        yield conn


def migrate(url: str) -> None:
    """Bring the schema to the newest revision (idempotent)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    command.upgrade(config, "head")
