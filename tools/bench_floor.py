"""`python -m tools.bench_floor`: a bench-only service, the floor under the call
signaling figures (tools/bench_calls.py).

It runs on the services' own runtime (services/runner.py, bridge/service.py), as
callsig does: its own process, one shared QoS 1 subscription over TCP, the
message acknowledged after the handler returns. Its handler answers each ping
and does nothing else, or first commits one row to the system's database, the
least a service that stores before it answers can do:
- PostgreSQL: one INSERT in autocommit on a psycopg connection of its own
  (core/pg_line.py), as callsig's invite statement runs;
- SQLite: one INSERT in its own transaction on the sqlite3 module, on a
  connection from the project's engine (WAL, synchronous=NORMAL), as callsig's
  SQLite invite runs.
So a ping through this service, paced like the calls and through the same
gateway, is what any service costs on that path; invite → `incoming` minus it
is what call signaling itself costs.

BENCH_FLOOR_STORE=1 (`STORE_ENV`) turns the insert on. The table is
bench-only and lives in the bench's throw-away database.
"""

from __future__ import annotations

import os
import sqlite3

from bridge.mqtt import Inbound
from bridge.service import ServiceRuntime
from core.config import Settings, get_settings
from core.database import Database
from core.db import make_engine
from core.pg_line import PgLine
from services.runner import run

SERVICE = "bench_floor"
STORE_ENV = "BENCH_FLOOR_STORE"  # "1": commit a row before each answer


def storing() -> bool:
    return os.environ.get(STORE_ENV) == "1"


# Bench-only topics, deliberately not in bridge/topics.py: no part of the
# contract. The service role may publish and subscribe anywhere.
def ping_topic(run_id: str) -> str:
    return f"svc/bench/{run_id}/floor"


def answer_topic(run_id: str) -> str:
    return f"svc/bench/{run_id}/floor_answer"


def run_of(topic: str) -> str:
    """The run id in a `ping_topic`."""
    return topic.split("/")[2]


PING_FILTER = ping_topic("+")


_CREATE = "CREATE TABLE IF NOT EXISTS bench_floor (id INTEGER PRIMARY KEY, body TEXT NOT NULL)"
_CREATE_PG = "CREATE TABLE IF NOT EXISTS bench_floor (id bigserial PRIMARY KEY, body text NOT NULL)"
_INSERT_PG = "INSERT INTO bench_floor (body) VALUES (%(body)s) RETURNING id"
_INSERT = "INSERT INTO bench_floor (body) VALUES (:body)"


class FloorService:
    def __init__(self, runtime: ServiceRuntime, db: Database, settings: Settings) -> None:
        self.runtime = runtime
        self.db = db
        self.store = storing()
        self.line = (
            PgLine(settings.effective_database_url)
            if db.engine.dialect.name == "postgresql"
            else None
        )
        runtime.route(PING_FILTER, 1, self.on_ping)

    async def on_ping(self, message: Inbound) -> None:
        if self.store:
            await self._insert(message.payload.decode())
        self.runtime.mqtt.publish(answer_topic(run_of(message.topic)), message.payload)
        self.runtime.mqtt.flush()

    async def _insert(self, body: str) -> None:
        if self.line is not None:
            await self.line.fetch_all(_INSERT_PG, {"body": body})
            return
        pooled = self.db.engine.raw_connection()
        try:
            conn: sqlite3.Connection = pooled.driver_connection  # type: ignore[assignment]
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(_INSERT, {"body": body})
            conn.execute("COMMIT")
        finally:
            pooled.close()

    def start_background(self) -> None:
        pass

    async def stop(self) -> None:
        if self.line is not None:
            await self.line.close()


def create_table(url: str) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(_CREATE_PG if engine.dialect.name == "postgresql" else _CREATE)
    engine.dispose()


if __name__ == "__main__":
    if storing():
        create_table(get_settings().effective_database_url)
    run(SERVICE, FloorService)
