"""The common invite on PostgreSQL in one statement: both parties free, a shared
conversation, a new call id → the call rings.

One round trip (autocommit; a single statement is atomic) instead of six (BEGIN,
facts, lines, two inserts, COMMIT). The two lines are inserted in user-id order
(byte order, as the general transaction sorts them), so two invites between the
same users at once wait on each other instead of deadlocking. Anything else (a
refusal, busy, glare, an overdue ring holding a line, a repeated id, or another
instance taking a line at the same moment, which the line's primary key turns
into an error here) returns None, and the caller runs the general transaction,
which knows every rule.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from psycopg.errors import DeadlockDetected
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError, OperationalError

if TYPE_CHECKING:
    from services.callsig.machine import InviteRequest

_RING = text(
    """
    WITH facts AS (
        SELECT
            EXISTS (SELECT 1 FROM call WHERE id = :call_id) AS earlier,
            (SELECT c.id FROM conversation c
                JOIN member ma ON ma.conv_id = c.id AND ma.user_id = :a
                JOIN member mb ON mb.conv_id = c.id AND mb.user_id = :b
                ORDER BY c.kind <> 'direct', c.id
                LIMIT 1) AS conv_id,
            (SELECT display_name FROM "user" WHERE id = :a) AS a_name,
            (SELECT display_name FROM "user" WHERE id = :b) AS b_name,
            EXISTS (SELECT 1 FROM call_line WHERE user_id IN (:a, :b)) AS busy
    ),
    new_call AS (
        INSERT INTO call (id, caller_id, callee_id, conv_id, media, status, created_at,
                          ring_deadline)
        SELECT :call_id, :a, :b, conv_id, :media, 'ringing', :now, :deadline
        FROM facts
        WHERE NOT earlier AND NOT busy AND conv_id IS NOT NULL AND b_name IS NOT NULL
        RETURNING id
    ),
    new_lines AS (
        INSERT INTO call_line (user_id, call_id)
        SELECT party, new_call.id
        FROM new_call,
             unnest(ARRAY[LEAST(:a COLLATE "C", :b COLLATE "C"),
                          GREATEST(:a COLLATE "C", :b COLLATE "C")]) WITH ORDINALITY AS l(party, n)
        ORDER BY n
        RETURNING user_id
    )
    SELECT a_name, b_name, (SELECT count(*) FROM new_lines) AS lines FROM facts
    """
)


def try_ring(engine: Engine, rq: InviteRequest) -> tuple[str, str] | None:
    """(caller name, callee name) when the call now rings, else None."""
    if rq.caller_id == rq.callee_id:
        return None
    params = {
        "call_id": rq.call_id,
        "a": rq.caller_id,
        "b": rq.callee_id,
        "media": rq.media,
        "now": rq.now,
        "deadline": rq.now + rq.ring_timeout,
    }
    try:
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            row = conn.execute(_RING, params).one()
    except IntegrityError:
        return None  # another instance took a line or the id first
    except OperationalError as exc:
        # Two invites between the same two users at the same moment: the lines
        # are taken in one order (the general transaction's too), so this is
        # only a safety net; the general transaction decides the glare.
        if isinstance(exc.orig, DeadlockDetected):
            return None
        raise
    if row.lines != 2:
        return None
    return row.a_name, row.b_name
