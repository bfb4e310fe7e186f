"""A new ticket on PostgreSQL in one statement: the conversation, its members,
the ticket and its events, and, when nobody is waiting, a slot taken for the
operator the rules pick (assignment on arrival).

One round trip (autocommit; a single statement is atomic) instead of nine
(BEGIN, the queue, the operators, the slot, four inserts, COMMIT): the
creation is most of the time between `POST /v1/support/tickets` and the user's
`assigned`.

The pick is `queue.pick_operator`'s rule in SQL (fewest open chats, then the
oldest last assignment, never assigned first, then the id in byte order); the
routing tests run on both databases, so both paths answer to the same tests
(tests/integration/test_support_routing.py). The slot is taken by a
conditional update, re-checked under the operator row's lock, so a claim made
at the same moment that took the last slot leaves this ticket queued, as the
general transaction does (the router then takes it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, text

_OPEN = text(
    """
    WITH nobody_waiting AS (
        SELECT NOT EXISTS (SELECT 1 FROM support_ticket WHERE status = 'queued') AS yes
    ),
    pick AS (
        SELECT o.user_id FROM "operator" o, nobody_waiting n
        WHERE n.yes AND o.status = 'online' AND o.connected AND o.open_chats < o.capacity
        ORDER BY o.open_chats, o.last_assigned_at NULLS FIRST, o.user_id COLLATE "C"
        LIMIT 1
    ),
    took AS (
        UPDATE "operator" o
        SET open_chats = o.open_chats + 1, last_assigned_at = :now
        FROM pick
        WHERE o.user_id = pick.user_id
          AND o.open_chats < o.capacity AND o.status = 'online' AND o.connected
        RETURNING o.user_id
    ),
    new_conversation AS (
        INSERT INTO conversation (id, kind, title, created_at, last_seq)
        VALUES (:conv_id, 'support', :subject, :now, 0)
        RETURNING id
    ),
    new_members AS (
        INSERT INTO member (conv_id, user_id, last_read_seq, joined_at, muted)
        SELECT c.id, m.user_id, 0, :now, false
        FROM new_conversation c,
             (SELECT CAST(:user_id AS text) AS user_id UNION ALL SELECT user_id FROM took) m
    ),
    new_ticket AS (
        INSERT INTO support_ticket (
            id, user_id, conv_id, subject, priority, status, version, created_at, queued_at,
            front, escalations, operator_id, assigned_at, sla_deadline
        )
        SELECT :ticket_id, :user_id, c.id, :subject, :priority,
               CASE WHEN t.user_id IS NULL THEN 'queued' ELSE 'assigned' END,
               CASE WHEN t.user_id IS NULL THEN 1 ELSE 2 END,
               :now, :now, false, 0, t.user_id,
               CASE WHEN t.user_id IS NULL THEN NULL ELSE CAST(:now AS timestamptz) END,
               CASE WHEN t.user_id IS NULL THEN NULL ELSE CAST(:deadline AS timestamptz) END
        FROM new_conversation c LEFT JOIN took t ON true
        RETURNING id
    ),
    new_events AS (
        INSERT INTO support_ticket_event (ticket_id, at, kind, actor_id, operator_id, detail)
        SELECT n.id, :now, 'opened', :user_id, NULL, :priority FROM new_ticket n
        UNION ALL
        SELECT n.id, :now, 'assigned', NULL, t.user_id, 'routed' FROM new_ticket n, took t
    )
    SELECT t.user_id AS operator_id, u.display_name AS name
    FROM took t JOIN "user" u ON u.id = t.user_id
    """
)


@dataclass(frozen=True, slots=True)
class Assignee:
    operator_id: str
    name: str


def applies(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def open_ticket(
    engine: Engine,
    *,
    ticket_id: str,
    conv_id: str,
    user_id: str,
    subject: str,
    priority: str,
    now: datetime,
    deadline: datetime,
) -> Assignee | None:
    """Create the ticket; the operator it was assigned to on arrival, or None
    when it was queued. `deadline` is its first-response deadline if assigned."""
    params = {
        "ticket_id": ticket_id,
        "conv_id": conv_id,
        "user_id": user_id,
        "subject": subject,
        "priority": priority,
        "now": now,
        "deadline": deadline,
    }
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        row = conn.execute(_OPEN, params).first()
    return Assignee(row.operator_id, row.name) if row is not None else None
