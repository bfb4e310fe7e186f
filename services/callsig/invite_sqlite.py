"""The common invite on SQLite, on the sqlite3 module directly: both parties
free, a shared conversation, a new call id → the call rings.

The same decision as invite_pg.py's statement, in one short transaction of
three statements (SQLite has no INSERT inside WITH). Why not through
SQLAlchemy: measured on the invite with the service idle between calls, as it
is at a few calls a second, the general transaction took 1.3 ms and this 0.4 ms
(0.3 and 0.1 ms back to back). The time that goes is not SQLite's but the
Python that SQLAlchemy runs around each statement, whose code is no longer in
the processor's caches after an idle moment.

Datetimes are stored as SQLAlchemy stores them (its own bind processor for
this dialect), so the general transaction and every reader see the same rows.
Anything else (a refusal, busy, glare, an overdue ring holding a line, a
repeated id, a write another process holds too long) returns None, and the
caller runs the general transaction, which knows every rule.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import Dialect, Engine

from core.models import Call

if TYPE_CHECKING:
    from services.callsig.machine import InviteRequest

_FACTS = """
    SELECT
        EXISTS (SELECT 1 FROM call WHERE id = :call_id),
        (SELECT c.id FROM conversation c
            JOIN member ma ON ma.conv_id = c.id AND ma.user_id = :a
            JOIN member mb ON mb.conv_id = c.id AND mb.user_id = :b
            ORDER BY c.kind <> 'direct', c.id
            LIMIT 1),
        (SELECT display_name FROM "user" WHERE id = :a),
        (SELECT display_name FROM "user" WHERE id = :b),
        EXISTS (SELECT 1 FROM call_line WHERE user_id IN (:a, :b))
"""
_INSERT_CALL = """
    INSERT INTO call (id, caller_id, callee_id, conv_id, media, status, created_at,
                      ring_deadline)
    VALUES (:call_id, :a, :b, :conv_id, :media, 'ringing', :now, :deadline)
"""
# In user-id order, as the general transaction inserts them.
_INSERT_LINES = "INSERT INTO call_line (user_id, call_id) VALUES (:first, :id), (:second, :id)"


@cache
def _stored_datetime(dialect: Dialect) -> Callable[[datetime], Any]:
    column_type = Call.__table__.c.created_at.type  # type: ignore[attr-defined]
    processor = column_type.dialect_impl(dialect).bind_processor(dialect)
    if processor is None:
        raise RuntimeError(f"{dialect.name}: no datetime bind processor")
    return processor  # type: ignore[no-any-return]


def try_ring(engine: Engine, rq: InviteRequest) -> tuple[str, str] | None:
    """(caller name, callee name) when the call now rings, else None."""
    if rq.caller_id == rq.callee_id:
        return None
    stored = _stored_datetime(engine.dialect)
    pooled = engine.raw_connection()
    try:
        conn: sqlite3.Connection = pooled.driver_connection  # type: ignore[assignment]
        conn.execute("BEGIN IMMEDIATE")
        names = _ring(conn, rq, stored)
        if names is not None:
            conn.execute("COMMIT")
        return names
    except sqlite3.Error:
        return None  # as in invite_pg: the general transaction decides, and retries
    finally:
        pooled.close()  # back to the pool, which rolls back what was not committed


def _ring(
    conn: sqlite3.Connection, rq: InviteRequest, stored: Callable[[datetime], Any]
) -> tuple[str, str] | None:
    ids = {"call_id": rq.call_id, "a": rq.caller_id, "b": rq.callee_id}
    earlier, conv_id, a_name, b_name, busy = conn.execute(_FACTS, ids).fetchone()
    if earlier or busy or conv_id is None or b_name is None:
        return None
    conn.execute(
        _INSERT_CALL,
        {
            **ids,
            "conv_id": conv_id,
            "media": rq.media,
            "now": stored(rq.now),
            "deadline": stored(rq.now + rq.ring_timeout),
        },
    )
    first, second = sorted((rq.caller_id, rq.callee_id))
    conn.execute(_INSERT_LINES, {"first": first, "second": second, "id": rq.call_id})
    return a_name, b_name
