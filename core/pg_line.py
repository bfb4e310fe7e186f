"""One PostgreSQL connection of psycopg's own, for a hot statement run one at a time.

`core.database.Database` runs synchronous SQLAlchemy code through the asyncio
engine; every call checks a connection out of the pool and back in, each a
greenlet hop and an event-loop turn. Measured on the persistence service's store
statement (one message): 0.6-0.75 ms of CPU and 1.5-1.7 ms from call to result
that way, 0.25 ms and 0.66 ms straight through psycopg. A caller that runs one
statement at a time (the persistence service's batch writer) keeps this one
connection instead.

Outages are handled as `Database.run` handles them: a lost connection or a
server that is down or restarting is retried with backoff, on a new connection,
forever; the caller's MQTT message stays unacknowledged meanwhile. A statement
retried after a lost connection may have committed the first time: callers make
their statements safe to repeat (the store statement fails whole on a re-send,
by a unique constraint, and the caller then decides the batch again).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, LiteralString

import psycopg
from sqlalchemy import make_url

from core.db import normalise_url, postgres_connect_args

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 5


def libpq_conninfo(url: str) -> str:
    """`postgresql://` or SQLAlchemy's `postgresql+psycopg://` as libpq reads it."""
    return (
        make_url(normalise_url(url))
        .set(drivername="postgresql")
        .render_as_string(hide_password=False)
    )


class PgLine:
    def __init__(self, url: str) -> None:
        self._conninfo = libpq_conninfo(url)
        self._options = postgres_connect_args(url)["options"]
        self._conn: psycopg.AsyncConnection[tuple[Any, ...]] | None = None

    async def fetch_all(
        self, query: LiteralString, params: Mapping[str, Any]
    ) -> list[tuple[Any, ...]]:
        """Run one statement in autocommit and return its rows. Integrity and
        programming errors are raised as psycopg's; outages are waited out."""
        delay = 0.05
        while True:
            try:
                conn = await self._connection()
                cursor = await conn.execute(query, params)
                return await cursor.fetchall()
            except psycopg.OperationalError as exc:
                await self._drop()
                log.warning("database unavailable (%s); retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _connection(self) -> psycopg.AsyncConnection[tuple[Any, ...]]:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                self._conninfo,
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
                options=self._options,
            )
        return self._conn

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            await conn.close()

    async def close(self) -> None:
        await self._drop()
