"""The store statement keeps to its indexes however its tables grew (PostgreSQL).

psycopg prepares a statement after a few runs, and PostgreSQL may then keep one
generic plan for good. Made while the tables were nearly empty (a new database,
before autovacuum's first ANALYZE, or with autovacuum off), that plan scans
whole tables, and every message then costs more than the one before
(core/db.py, POSTGRES_OPTIONS). The connections the system opens must rule that
out. Counted by PostgreSQL itself: the sequential scans the transaction made.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import psycopg
import pytest

from bridge.wire.messaging import SendMessage
from core.db import migrate, postgres_connect_args
from core.ids import new_id
from core.pg_line import libpq_conninfo
from services.persistence import store_pg
from services.persistence.store import SendItem

TABLES = ("message", "conversation", "member", "device")


def _seed(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    # No ANALYZE may come in between and replan (where autovacuum is on).
    for table in TABLES:
        conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
    for user in ("u_a", "u_b"):
        conn.execute(
            'INSERT INTO "user" (id, username, password_hash, display_name, role, created_at)'
            " VALUES (%s, %s, 'x', %s, 'user', now())",
            (user, user, user),
        )
        conn.execute(
            "INSERT INTO device (id, user_id, platform, push_token, created_at, online)"
            " VALUES (%s, %s, 'ios', 'ExponentPushToken[x]', now(), false)",
            (f"d_{user}", user),
        )
    conn.execute(
        "INSERT INTO conversation (id, kind, created_at, last_seq)"
        " VALUES ('c_1', 'direct', now(), 0)"
    )
    for user in ("u_a", "u_b"):
        conn.execute(
            "INSERT INTO member (conv_id, user_id, last_read_seq, joined_at, muted)"
            " VALUES ('c_1', %s, 0, now(), false)",
            (user,),
        )


def _store_one(conn: psycopg.Connection[tuple[object, ...]], marks: list[str]) -> str:
    item = SendItem(
        "c_1", "u_a", SendMessage(client_msg_id=new_id("c_"), kind="text", text="hi"), False
    )
    ids, params = store_pg.params_for([item], marks, datetime.now(UTC))
    rows = conn.execute(store_pg.STORE_TEXTS, params, prepare=True).fetchall()
    assert [row[0] for row in rows] == ids
    return ids[0]


def _grow(conn: psycopg.Connection[tuple[object, ...]], messages: int) -> None:
    conn.execute(
        "INSERT INTO message (id, conv_id, seq, sender_id, kind, text, client_msg_id,"
        " created_at, delivered)"
        " SELECT 'm_bulk' || g, 'c_1', 1000000 + g, 'u_b', 'text', 'hi', 'c_bulk' || g,"
        " now(), true FROM generate_series(1, %s) AS g",
        (messages,),
    )


def _seq_scans_in_transaction(conn: psycopg.Connection[tuple[object, ...]]) -> dict[str, int]:
    rows = conn.execute(
        "SELECT relname, seq_scan FROM pg_stat_xact_user_tables WHERE relname = ANY(%s)",
        (list(TABLES),),
    ).fetchall()
    return {str(name): int(str(count)) for name, count in rows}


def _scans_after_growth(url: str, options: str) -> dict[str, int]:
    """Plan the statement on near-empty tables, grow them, run it again: the
    sequential scans of those later runs, per table."""
    conninfo = libpq_conninfo(url)
    with psycopg.connect(conninfo, autocommit=True, options=options) as conn:
        _seed(conn)
        # What PostgreSQL may settle on by itself after five runs, made certain.
        conn.execute("SET plan_cache_mode = force_generic_plan")
        previous = _store_one(conn, [])
        for _ in range(3):
            previous = _store_one(conn, [previous])
        _grow(conn, 20_000)
        conn.autocommit = False
        with conn.transaction(force_rollback=True):
            for _ in range(5):
                previous = _store_one(conn, [previous])
            return _seq_scans_in_transaction(conn)


@pytest.fixture
def postgres_url(db_kind: str, database_factory: Callable[[], str]) -> str:
    if db_kind != "postgresql":
        pytest.skip("PostgreSQL's planner; runs in the PostgreSQL leg")
    url = database_factory()
    migrate(url)
    return url


def test_the_store_statement_keeps_to_indexes_as_tables_grow(postgres_url: str) -> None:
    scans = _scans_after_growth(postgres_url, postgres_connect_args(postgres_url)["options"])
    assert scans == dict.fromkeys(TABLES, 0)


def test_without_the_planner_options_the_same_plan_scans_the_messages(postgres_url: str) -> None:
    """The check above can fail: PostgreSQL's defaults scan the grown table."""
    scans = _scans_after_growth(postgres_url, "")
    assert scans["message"] > 0


def test_a_query_that_must_scan_is_not_compiled(postgres_url: str) -> None:
    """With sequential scans priced out, a query that has no index to use looks
    costly enough for JIT compilation, which takes longer than the query: the
    system's connections never compile."""
    options = postgres_connect_args(postgres_url)["options"]
    with psycopg.connect(libpq_conninfo(postgres_url), autocommit=True, options=options) as conn:
        row = conn.execute(
            "EXPLAIN (ANALYZE, FORMAT JSON) SELECT user_id, connected FROM operator"
        ).fetchone()
    assert row is not None
    (plan,) = row[0]
    assert plan["Plan"]["Node Type"] == "Seq Scan"
    assert "JIT" not in plan
