"""Tickets and operators as operators and supervisors see them: ticket views
with positions, unread counts and first answers, the operators' load, and the
floor's wait figures."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from statistics import median, quantiles
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    func,
    select,
)
from sqlalchemy.orm import aliased

from bridge.wire.support import (
    OperatorView,
    Person,
    TicketView,
    WaitStats,
)
from core.db import reading
from core.timefmt import to_wire
from services.support_router.outcome import Conflict, Rules
from services.support_router.queue import (
    Candidate,
    effective_priority,
    queue_order,
)
from services.support_router.store import positions, waiting
from services.support_router.tables import (
    conversation_t,
    event_t,
    member_t,
    message_t,
    operator_t,
    ticket_t,
    user_t,
)

HANDLING_SAMPLE = 50


# --- views ----------------------------------------------------------------------------------

_customer = aliased(user_t)
_agent = aliased(user_t)
_agent_member = aliased(member_t)
_first = aliased(message_t)

_VIEW = (
    select(
        ticket_t,
        _customer.c.display_name.label("customer_name"),
        _agent.c.display_name.label("agent_name"),
        (conversation_t.c.last_seq - _agent_member.c.last_read_seq).label("unread"),
        select(func.min(_first.c.created_at))
        .where(
            _first.c.conv_id == ticket_t.c.conv_id,
            _first.c.sender_id == ticket_t.c.operator_id,
            _first.c.created_at >= ticket_t.c.assigned_at,
        )
        .correlate(ticket_t)
        .scalar_subquery()
        .label("answered_at"),
    )
    .join(_customer, _customer.c.id == ticket_t.c.user_id)
    .join(conversation_t, conversation_t.c.id == ticket_t.c.conv_id)
    .outerjoin(_agent, _agent.c.id == ticket_t.c.operator_id)
    .outerjoin(
        _agent_member,
        and_(
            _agent_member.c.conv_id == ticket_t.c.conv_id,
            _agent_member.c.user_id == ticket_t.c.operator_id,
        ),
    )
)


def _view(row: Any, position: int | None, rules: Rules, now: datetime) -> TicketView:
    waited = (now - row.queued_at).total_seconds() if row.queued_at else 0.0
    queued = row.status == "queued"
    answered = row.first_response_at or row.answered_at
    return TicketView(
        ticket_id=row.id,
        conv_id=row.conv_id,
        user=Person(id=row.user_id, name=row.customer_name),
        subject=row.subject,
        priority=row.priority,
        effective_priority=(
            effective_priority(row.priority, waited, rules.aging_seconds)
            if queued
            else row.priority
        ),
        status=row.status,
        version=row.version,
        agent=Person(id=row.operator_id, name=row.agent_name) if row.operator_id else None,
        position=position if queued else None,
        created_at=to_wire(row.created_at),
        queued_at=to_wire(row.queued_at) if queued and row.queued_at else None,
        assigned_at=to_wire(row.assigned_at) if row.assigned_at else None,
        first_response_at=to_wire(answered) if answered else None,
        sla_deadline=to_wire(row.sla_deadline) if row.sla_deadline and not answered else None,
        closed_at=to_wire(row.closed_at) if row.closed_at else None,
        closed_by=row.closed_by,
        escalations=row.escalations,
        rating=row.rating,
        unread_count=row.unread if row.operator_id and row.unread is not None else None,
    )


def ticket_views(
    conn: Connection, where: Any, rules: Rules, now: datetime, *, limit: int = 200
) -> list[TicketView]:
    """Tickets matching `where`, newest first, with queue positions."""
    rows = conn.execute(_VIEW.where(where).order_by(ticket_t.c.created_at.desc()).limit(limit))
    found = rows.all()
    where_queued = positions(queue_order(waiting(conn), now, rules.aging_seconds))
    return [_view(row, where_queued.get(row.id), rules, now) for row in found]


def views_by_id(
    engine: Engine, ticket_ids: Iterable[str], rules: Rules, now: datetime
) -> dict[str, TicketView]:
    ids = list(set(ticket_ids))
    if not ids:
        return {}
    with reading(engine) as conn:
        return {v.ticket_id: v for v in ticket_views(conn, ticket_t.c.id.in_(ids), rules, now)}


def queue_views(engine: Engine, rules: Rules, now: datetime) -> list[TicketView]:
    """Every waiting ticket, in queue order."""
    with reading(engine) as conn:
        views = ticket_views(conn, ticket_t.c.status == "queued", rules, now, limit=10_000)
    return sorted(views, key=lambda view: view.position or 0)


def operator_views(engine: Engine) -> list[OperatorView]:
    with reading(engine) as conn:
        rows = conn.execute(
            select(operator_t, user_t.c.display_name, user_t.c.role)
            .join(user_t, user_t.c.id == operator_t.c.user_id)
            .order_by(user_t.c.display_name)
        )
        return [_operator_view(row) for row in rows]


def operator_view(engine: Engine, operator_id: str) -> OperatorView:
    for view in operator_views(engine):
        if view.id == operator_id:
            return view
    raise Conflict(404, "unknown_operator", "no such operator")


def _operator_view(row: Any) -> OperatorView:
    candidate = Candidate(
        row.user_id,
        row.status,
        row.connected,
        row.open_chats,
        row.capacity,
        row.last_assigned_at,
    )
    return OperatorView(
        id=row.user_id,
        name=row.display_name,
        status=row.status,
        connected=row.connected,
        available=candidate.eligible,
        open_chats=row.open_chats,
        capacity=row.capacity,
        supervisor=row.role == "supervisor",
        last_assigned_at=to_wire(row.last_assigned_at) if row.last_assigned_at else None,
    )


def handling_seconds(engine: Engine) -> float | None:
    """Mean assigned-to-closed time of the last closed tickets (None: none yet)."""
    with reading(engine) as conn:
        rows = conn.execute(
            select(ticket_t.c.assigned_at, ticket_t.c.closed_at)
            .where(ticket_t.c.status == "closed", ticket_t.c.assigned_at.is_not(None))
            .order_by(ticket_t.c.closed_at.desc())
            .limit(HANDLING_SAMPLE)
        ).all()
    if not rows:
        return None
    total: float = sum((r.closed_at - r.assigned_at).total_seconds() for r in rows)
    return total / len(rows)


def wait_stats(engine: Engine, now: datetime) -> WaitStats:
    hour_ago = now - timedelta(hours=1)
    with reading(engine) as conn:
        queued = conn.execute(
            select(ticket_t.c.queued_at).where(ticket_t.c.status == "queued")
        ).all()
        assigned = conn.execute(
            select(event_t.c.at, ticket_t.c.queued_at)
            .join(ticket_t, ticket_t.c.id == event_t.c.ticket_id)
            .where(event_t.c.kind == "assigned", event_t.c.at >= hour_ago)
        ).all()
        first = conn.execute(
            select(ticket_t.c.assigned_at, ticket_t.c.first_response_at).where(
                ticket_t.c.first_response_at >= hour_ago
            )
        ).all()
        closed = conn.execute(
            select(func.count(), func.avg(ticket_t.c.rating)).where(
                ticket_t.c.status == "closed", ticket_t.c.closed_at >= hour_ago
            )
        ).one()
    waits = [
        (row.at - row.queued_at).total_seconds() for row in assigned if row.queued_at is not None
    ]
    firsts = [
        (row.first_response_at - row.assigned_at).total_seconds()
        for row in first
        if row.assigned_at is not None
    ]
    return WaitStats(
        waiting_now=len(queued),
        longest_wait_seconds=(
            max((now - row.queued_at).total_seconds() for row in queued) if queued else None
        ),
        assigned_last_hour=len(assigned),
        median_wait_seconds=median(waits) if waits else None,
        p90_wait_seconds=_p90(waits),
        median_first_response_seconds=median(firsts) if firsts else None,
        closed_last_hour=int(closed[0]),
        average_rating=float(closed[1]) if closed[1] is not None else None,
    )


def _p90(values: Sequence[float]) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return quantiles(values, n=10, method="inclusive")[-1]


def ticket_events(engine: Engine, ticket_id: str) -> list[dict[str, Any]]:
    with reading(engine) as conn:
        rows = conn.execute(
            select(event_t).where(event_t.c.ticket_id == ticket_id).order_by(event_t.c.id)
        )
        return [
            {
                "at": to_wire(row.at),
                "kind": row.kind,
                "operator_id": row.operator_id,
                "actor_id": row.actor_id,
                "detail": row.detail,
            }
            for row in rows
        ]
