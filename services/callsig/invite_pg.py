"""The common invite on PostgreSQL in one statement: both parties free, a shared
conversation, a new call id → the call rings.

One round trip (autocommit; a single statement is atomic) instead of six (BEGIN,
facts, lines, two inserts, COMMIT); the service runs it on a connection of its
own (core/pg_line.py), without SQLAlchemy's cost per statement. The two lines
are inserted in user-id order (byte order, as the general transaction sorts
them), so two invites between the same users at once wait on each other
instead of deadlocking. Anything else (a refusal, busy, glare, an overdue ring
holding a line, a repeated id, or another instance taking a line at the same
moment, which the line's primary key turns into an error here) returns None,
and the caller runs the general transaction, which knows every rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, LiteralString

import psycopg
from psycopg.errors import DeadlockDetected
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from core.pg_line import PgLine

if TYPE_CHECKING:
    from services.callsig.machine import InviteRequest

_RING: LiteralString = """
    WITH facts AS (
        SELECT
            EXISTS (SELECT 1 FROM call WHERE id = %(call_id)s) AS earlier,
            (SELECT c.id FROM conversation c
                JOIN member ma ON ma.conv_id = c.id AND ma.user_id = %(a)s
                JOIN member mb ON mb.conv_id = c.id AND mb.user_id = %(b)s
                ORDER BY c.kind <> 'direct', c.id
                LIMIT 1) AS conv_id,
            (SELECT display_name FROM "user" WHERE id = %(a)s) AS a_name,
            (SELECT display_name FROM "user" WHERE id = %(b)s) AS b_name,
            EXISTS (SELECT 1 FROM call_line WHERE user_id IN (%(a)s, %(b)s)) AS busy
    ),
    new_call AS (
        INSERT INTO call (id, caller_id, callee_id, conv_id, media, status, created_at,
                          ring_deadline)
        SELECT %(call_id)s, %(a)s, %(b)s, conv_id, %(media)s, 'ringing', %(now)s, %(deadline)s
        FROM facts
        WHERE NOT earlier AND NOT busy AND conv_id IS NOT NULL AND b_name IS NOT NULL
        RETURNING id
    ),
    new_lines AS (
        INSERT INTO call_line (user_id, call_id)
        SELECT party, new_call.id
        FROM new_call,
             unnest(ARRAY[LEAST(%(a)s COLLATE "C", %(b)s COLLATE "C"),
                          GREATEST(%(a)s COLLATE "C", %(b)s COLLATE "C")])
                 WITH ORDINALITY AS l(party, n)
        ORDER BY n
        RETURNING user_id
    )
    SELECT a_name, b_name, (SELECT count(*) FROM new_lines) AS lines FROM facts
"""


def _params(rq: InviteRequest) -> dict[str, Any]:
    return {
        "call_id": rq.call_id,
        "a": rq.caller_id,
        "b": rq.callee_id,
        "media": rq.media,
        "now": rq.now,
        "deadline": rq.now + rq.ring_timeout,
    }


def _names(row: Sequence[Any]) -> tuple[str, str] | None:
    a_name, b_name, lines = row
    return (a_name, b_name) if lines == 2 else None


def try_ring(engine: Engine, rq: InviteRequest) -> tuple[str, str] | None:
    """(caller name, callee name) when the call now rings, else None."""
    if rq.caller_id == rq.callee_id:
        return None
    try:
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            row = conn.exec_driver_sql(_RING, _params(rq)).one()
    except IntegrityError:
        return None  # another instance took a line or the id first
    except OperationalError as exc:
        # Two invites between the same two users at the same moment: the lines
        # are taken in one order (the general transaction's too), so this is
        # only a safety net; the general transaction decides the glare.
        if isinstance(exc.orig, DeadlockDetected):
            return None
        raise
    return _names(row)


async def try_ring_on(line: PgLine, rq: InviteRequest) -> tuple[str, str] | None:
    """`try_ring` on a connection of its own (core/pg_line.py): the service's path."""
    if rq.caller_id == rq.callee_id:
        return None
    try:
        rows = await line.fetch_all(_RING, _params(rq))
    except (psycopg.IntegrityError, DeadlockDetected):
        return None  # as in try_ring
    return _names(rows[0])
