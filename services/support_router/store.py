"""Tickets and operators in the database: every change of a ticket's state is
one transaction here, shared by the router and the API.

Each change returns an `Outcome`: who must be told what, which live views
changed, and what the router must do next. The caller publishes it after the
commit (services/support_router/notify.py).

Atomicity: a claim moves a ticket out of `queued` only if it is still queued
and raises the operator's `open_chats` only if it is still under capacity, in
one transaction (row locks on PostgreSQL, the write lock on SQLite); a racing
claim changes nothing and gets a `Conflict`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    case,
    delete,
    func,
    insert,
    literal,
    select,
    update,
)

from bridge.wire.support import (
    PRIORITIES,
    DeskEventName,
    OperatorStatus,
    Person,
    Priority,
    SupportEventName,
    SupportReason,
)
from core.db import reading
from core.ids import new_id
from core.models import User
from services.support_router import open_pg
from services.support_router.outcome import Brief, Conflict, Notice, Outcome, Rules
from services.support_router.queue import (
    RANK,
    Candidate,
    Waiting,
    pick_operator,
    queue_order,
    serving_capacity,
)
from services.support_router.tables import (
    conversation_t,
    device_t,
    event_t,
    member_t,
    message_t,
    operator_t,
    ticket_t,
    user_t,
)

OPERATOR_ROLES = ("operator", "supervisor")


# --- opening -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Opened:
    ticket_id: str
    conv_id: str
    # Where it waits (None: an operator took it on arrival).
    position: int | None
    outcome: Outcome


def open_ticket(
    engine: Engine, user_id: str, subject: str, priority: Priority, now: datetime, rules: Rules
) -> Opened:
    """A `support` conversation with the user, and its ticket.

    Assignment on arrival: if nobody is waiting and an operator is eligible,
    the ticket is created already theirs (the router's own rules pick them:
    services/support_router/queue.py), so the user hears `assigned` without a
    round trip through the router. Otherwise it is queued and the router takes
    it from there. The operator's slot is taken first and only if still free;
    the ticket's row is new, so no other change can be waiting on it."""
    ticket_id, conv_id = new_id("t_"), new_id("c_")
    if open_pg.applies(engine):
        return _open_in_one_statement(
            engine, ticket_id, conv_id, user_id, subject, priority, now, rules
        )
    with engine.begin() as conn:
        others = waiting(conn)
        chosen = None if others else _slot_on_arrival(conn, now)
        conn.execute(
            insert(conversation_t).values(
                id=conv_id, kind="support", title=subject, created_at=now, last_seq=0
            )
        )
        joined = [user_id] if chosen is None else [user_id, chosen.operator_id]
        conn.execute(
            insert(member_t),
            [
                {
                    "conv_id": conv_id,
                    "user_id": u,
                    "last_read_seq": 0,
                    "joined_at": now,
                    "muted": False,
                }
                for u in joined
            ],
        )
        deadline = rules.deadline(priority, now) if chosen else None
        conn.execute(
            insert(ticket_t).values(
                id=ticket_id,
                user_id=user_id,
                conv_id=conv_id,
                subject=subject,
                priority=priority,
                status="queued" if chosen is None else "assigned",
                version=1 if chosen is None else 2,
                created_at=now,
                queued_at=now,
                front=False,
                escalations=0,
                operator_id=chosen.operator_id if chosen else None,
                assigned_at=now if chosen else None,
                sla_deadline=deadline,
            )
        )
        events = [{"kind": "opened", "actor_id": user_id, "operator_id": None, "detail": priority}]
        if chosen is not None:
            events.append(
                {
                    "kind": "assigned",
                    "actor_id": None,
                    "operator_id": chosen.operator_id,
                    "detail": "routed",
                }
            )
        conn.execute(insert(event_t), [{"ticket_id": ticket_id, "at": now, **e} for e in events])
    if chosen is not None and deadline is not None:
        return _opened_assigned(
            ticket_id, conv_id, user_id, priority, chosen.operator_id, chosen.name, deadline
        )
    mine = Waiting(ticket_id, priority, now, False)
    return _opened_queued(ticket_id, conv_id, user_id, priority, [*others, mine], now, rules)


def _open_in_one_statement(
    engine: Engine,
    ticket_id: str,
    conv_id: str,
    user_id: str,
    subject: str,
    priority: Priority,
    now: datetime,
    rules: Rules,
) -> Opened:
    deadline = rules.deadline(priority, now)
    assignee = open_pg.open_ticket(
        engine,
        ticket_id=ticket_id,
        conv_id=conv_id,
        user_id=user_id,
        subject=subject,
        priority=priority,
        now=now,
        deadline=deadline,
    )
    if assignee is not None:
        return _opened_assigned(
            ticket_id, conv_id, user_id, priority, assignee.operator_id, assignee.name, deadline
        )
    with reading(engine) as conn:
        queue = waiting(conn)
    return _opened_queued(ticket_id, conv_id, user_id, priority, queue, now, rules)


def _opened_assigned(
    ticket_id: str,
    conv_id: str,
    user_id: str,
    priority: Priority,
    operator_id: str,
    name: str,
    deadline: datetime,
) -> Opened:
    brief = Brief(ticket_id, user_id, conv_id, 2, priority, Person(id=operator_id, name=name))
    assigned = Outcome(
        notices=[Notice(brief, "assigned", "routed", ((operator_id, "assigned"),))],
        floor_changed=True,
        deadlines=[(ticket_id, 2, deadline)],
    )
    return Opened(ticket_id, conv_id, None, assigned)


def _opened_queued(
    ticket_id: str,
    conv_id: str,
    user_id: str,
    priority: Priority,
    queue: list[Waiting],
    now: datetime,
    rules: Rules,
) -> Opened:
    """`queue`: every waiting ticket, this one included."""
    brief = Brief(ticket_id, user_id, conv_id, 1, priority, None)
    queued = Outcome(
        notices=[Notice(brief, "queued", "new")],
        queue_changed=True,
        floor_changed=True,
        route=True,
    )
    ordered = queue_order(queue, now, rules.aging_seconds)
    return Opened(ticket_id, conv_id, positions(ordered)[ticket_id], queued)


def _slot_on_arrival(conn: Connection, now: datetime) -> Candidate | None:
    """The operator the rules pick, with a slot taken for them; the next one
    if a claim made at the same moment took that slot; None if nobody is free."""
    pool = candidates(conn)
    while (chosen := pick_operator(pool)) is not None:
        if _take_slot(conn, chosen.operator_id, now, routed=True):
            return chosen
        pool = [c for c in pool if c.operator_id != chosen.operator_id]
    return None


# --- reading the queue and the operators ---------------------------------------------


def waiting(conn: Connection) -> list[Waiting]:
    rows = conn.execute(
        select(
            ticket_t.c.id,
            ticket_t.c.priority,
            ticket_t.c.queued_at,
            ticket_t.c.front,
            ticket_t.c.skip_operator_id,
        ).where(ticket_t.c.status == "queued")
    )
    return [
        Waiting(row.id, row.priority, row.queued_at, row.front, row.skip_operator_id)
        for row in rows
    ]


def candidates(conn: Connection) -> list[Candidate]:
    rows = conn.execute(
        select(operator_t, user_t.c.display_name).join(user_t, user_t.c.id == operator_t.c.user_id)
    )
    return [
        Candidate(
            row.user_id,
            row.status,
            row.connected,
            row.open_chats,
            row.capacity,
            row.last_assigned_at,
            row.display_name,
        )
        for row in rows
    ]


@dataclass(frozen=True, slots=True)
class Floor:
    queue: list[Waiting]
    operators: list[Candidate]


def floor(engine: Engine, now: datetime, rules: Rules) -> Floor:
    with reading(engine) as conn:
        return Floor(queue_order(waiting(conn), now, rules.aging_seconds), candidates(conn))


def online_capacity(engine: Engine) -> int:
    """Chats the operators online and connected can hold at once."""
    with reading(engine) as conn:
        return serving_capacity(candidates(conn))


def positions(ordered: Sequence[Waiting]) -> dict[str, int]:
    return {ticket.ticket_id: index for index, ticket in enumerate(ordered, start=1)}


# --- claiming -------------------------------------------------------------------------

ClaimKind = Literal["routed", "taken"]


def claim(
    engine: Engine,
    ticket_id: str,
    operator_id: str,
    now: datetime,
    rules: Rules,
    kind: ClaimKind = "routed",
    operator_name: str | None = None,
) -> Outcome:
    """Give a waiting ticket to an operator, or raise `Conflict` and change nothing.

    `routed` (the router) needs the operator online, connected and under
    capacity; `taken` (an operator by hand) needs them not signed off and under
    capacity."""
    with engine.begin() as conn:
        return _claim_in(conn, ticket_id, operator_id, now, rules, kind, operator_name)


def _claim_in(
    conn: Connection,
    ticket_id: str,
    operator_id: str,
    now: datetime,
    rules: Rules,
    kind: ClaimKind,
    operator_name: str | None,
) -> Outcome:
    """Four statements: the ticket (only if still queued), the operator's slot
    (only if still free), membership, the event. The ticket's row is locked
    first, as in every other change, so no two changes can deadlock; a raise
    rolls everything back."""
    deadline = case(
        {name: rules.deadline(name, now) for name in PRIORITIES}, value=ticket_t.c.priority
    )
    ticket = conn.execute(
        update(ticket_t)
        .where(ticket_t.c.id == ticket_id, ticket_t.c.status == "queued")
        .values(
            status="assigned",
            operator_id=operator_id,
            assigned_at=now,
            sla_deadline=deadline,
            first_response_at=None,
            front=False,
            skip_operator_id=None,
            version=ticket_t.c.version + 1,
        )
        .returning(
            ticket_t.c.user_id,
            ticket_t.c.conv_id,
            ticket_t.c.priority,
            ticket_t.c.version,
            ticket_t.c.sla_deadline,
        )
    ).first()
    if ticket is None:
        raise _not_claimable(conn, ticket_id)
    if not _take_slot(conn, operator_id, now, routed=kind == "routed"):
        raise _unavailable(conn, operator_id)
    _add_member(conn, ticket.conv_id, operator_id, now)
    _record(conn, ticket_id, "assigned", now, operator_id=operator_id, detail=kind)
    agent = (
        Person(id=operator_id, name=operator_name)
        if operator_name is not None
        else _person(conn, operator_id)
    )
    brief = Brief(ticket_id, ticket.user_id, ticket.conv_id, ticket.version, ticket.priority, agent)
    return Outcome(
        notices=[Notice(brief, "assigned", kind, ((operator_id, "assigned"),))],
        queue_changed=True,
        floor_changed=True,
        members_changed=[ticket.conv_id],
        deadlines=[(ticket_id, ticket.version, _aware(ticket.sla_deadline))],
    )


def _take_slot(conn: Connection, operator_id: str, now: datetime, *, routed: bool) -> bool:
    """One more open chat for the operator, only if under capacity and
    available: online and connected for the router, not signed off for a take."""
    available = (
        and_(operator_t.c.status == "online", operator_t.c.connected.is_(True))
        if routed
        else operator_t.c.status != "offline"
    )
    took: int = conn.execute(
        update(operator_t)
        .where(
            operator_t.c.user_id == operator_id,
            operator_t.c.open_chats < operator_t.c.capacity,
            available,
        )
        .values(open_chats=operator_t.c.open_chats + 1, last_assigned_at=now)
    ).rowcount
    return took > 0


def _not_claimable(conn: Connection, ticket_id: str) -> Conflict:
    found = conn.execute(select(ticket_t.c.status).where(ticket_t.c.id == ticket_id)).first()
    if found is None:
        return Conflict(404, "not_found", "no such ticket")
    return Conflict(409, "not_queued", "the ticket is not waiting in the queue")


def _aware(at: datetime) -> datetime:
    """SQLite hands datetimes back naive (they are stored in UTC)."""
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _unavailable(conn: Connection, operator_id: str) -> Conflict:
    row = conn.execute(select(operator_t).where(operator_t.c.user_id == operator_id)).first()
    if row is None:
        return Conflict(404, "unknown_operator", "no such operator")
    if row.open_chats >= row.capacity:
        return Conflict(409, "at_capacity", "the operator has no free slot")
    return Conflict(409, "operator_unavailable", "the operator is not available")


# --- giving back, transferring, closing ---------------------------------------------------


def _requeue(
    conn: Connection,
    ticket: Any,
    now: datetime,
    reason: SupportReason,
    *,
    front: bool,
    skip: str | None = None,
    escalate: bool = False,
) -> Outcome:
    """Take an assigned ticket from its operator and put it back in the queue."""
    operator_id = ticket.operator_id
    values: dict[str, Any] = {
        "status": "queued",
        "operator_id": None,
        "assigned_at": None,
        "sla_deadline": None,
        "first_response_at": None,
        "front": front,
        "skip_operator_id": skip,
        "version": ticket.version + 1,
    }
    if escalate:
        values["escalations"] = ticket.escalations + 1
        values["priority"] = _raised(ticket.priority)
    conn.execute(update(ticket_t).where(ticket_t.c.id == ticket.id).values(**values))
    _free_slot(conn, operator_id)
    _remove_member(conn, ticket.conv_id, operator_id)
    if escalate:
        _record(
            conn, ticket.id, "escalated", now, operator_id=operator_id, detail=values["priority"]
        )
    _record(conn, ticket.id, "requeued", now, operator_id=operator_id, detail=reason)
    desk: DeskEventName = "escalated" if escalate else "unassigned"
    event: SupportEventName = "transferred" if reason == "transferred" else "queued"
    return Outcome(
        notices=[
            Notice(
                _brief(ticket, priority=values.get("priority")),
                event,
                reason,
                ((operator_id, desk),),
            )
        ],
        queue_changed=True,
        floor_changed=True,
        members_changed=[ticket.conv_id],
        route=True,
    )


def _raised(priority: str) -> str:
    return PRIORITIES[max(0, RANK[priority] - 1)]


def transfer(
    engine: Engine,
    ticket_id: str,
    actor: User,
    to_operator_id: str | None,
    now: datetime,
    rules: Rules,
) -> Outcome:
    """Hand an assigned ticket to another operator (online and connected;
    capacity is not checked: a deliberate hand-over), or back to the queue."""
    with engine.begin() as conn:
        ticket = _ticket_for_update(conn, ticket_id)
        _require_handler(ticket, actor)
        if ticket.status != "assigned":
            raise Conflict(409, "not_assigned", "only an assigned ticket can be transferred")
        if to_operator_id is None:
            return _requeue(conn, ticket, now, "transferred", front=False)
        if to_operator_id == ticket.operator_id:
            raise Conflict(409, "same_operator", "the ticket is already with that operator")
        target = conn.execute(
            select(operator_t).where(operator_t.c.user_id == to_operator_id)
        ).first()
        if target is None:
            raise Conflict(404, "unknown_operator", "no such operator")
        if target.status != "online" or not target.connected:
            raise Conflict(409, "operator_unavailable", "the operator is not online")
        deadline = rules.deadline(ticket.priority, now)
        conn.execute(
            update(ticket_t)
            .where(ticket_t.c.id == ticket_id)
            .values(
                operator_id=to_operator_id,
                assigned_at=now,
                sla_deadline=deadline,
                first_response_at=None,
                version=ticket.version + 1,
            )
        )
        _free_slot(conn, ticket.operator_id)
        conn.execute(
            update(operator_t)
            .where(operator_t.c.user_id == to_operator_id)
            .values(open_chats=operator_t.c.open_chats + 1, last_assigned_at=now)
        )
        _remove_member(conn, ticket.conv_id, ticket.operator_id)
        _add_member(conn, ticket.conv_id, to_operator_id, now)
        _record(conn, ticket_id, "transferred", now, operator_id=to_operator_id, actor_id=actor.id)
        brief = _brief(ticket, agent=_person(conn, to_operator_id))
    return Outcome(
        notices=[
            Notice(
                brief,
                "transferred",
                "transferred",
                ((ticket.operator_id, "unassigned"), (to_operator_id, "assigned")),
            )
        ],
        floor_changed=True,
        members_changed=[ticket.conv_id],
        deadlines=[(ticket_id, ticket.version + 1, deadline)],
        route=True,
    )


def close(engine: Engine, ticket_id: str, actor: User, now: datetime) -> Outcome:
    with engine.begin() as conn:
        ticket = _ticket_for_update(conn, ticket_id)
        by_user = actor.id == ticket.user_id
        if not by_user:
            _require_handler(ticket, actor)
        if ticket.status == "closed":
            raise Conflict(409, "closed", "the ticket is already closed")
        conn.execute(
            update(ticket_t)
            .where(ticket_t.c.id == ticket_id)
            .values(
                status="closed",
                closed_at=now,
                closed_by="user" if by_user else "agent",
                sla_deadline=None,
                front=False,
                version=ticket.version + 1,
            )
        )
        if ticket.operator_id is not None:
            _free_slot(conn, ticket.operator_id)
        _record(conn, ticket_id, "closed", now, actor_id=actor.id)
    reason: SupportReason = "closed_by_user" if by_user else "closed_by_agent"
    desk = ((ticket.operator_id, "closed"),) if ticket.operator_id else ()
    return Outcome(
        notices=[Notice(_brief(ticket), "closed", reason, desk)],  # type: ignore[arg-type]
        queue_changed=ticket.status == "queued",
        floor_changed=True,
        route=ticket.operator_id is not None,
    )


def rate(engine: Engine, ticket_id: str, user: User, score: int, comment: str | None) -> None:
    with engine.begin() as conn:
        ticket = _ticket_for_update(conn, ticket_id)
        if ticket.user_id != user.id:
            raise Conflict(404, "not_found", "no such ticket of yours")
        if ticket.status != "closed":
            raise Conflict(409, "not_closed", "a ticket can be rated once it is closed")
        if ticket.rating is not None:
            raise Conflict(409, "already_rated", "this ticket was rated already")
        conn.execute(
            update(ticket_t)
            .where(ticket_t.c.id == ticket_id)
            .values(rating=score, rating_comment=comment)
        )


# --- operators ----------------------------------------------------------------------------


def ensure_operator(conn: Connection, user_id: str, capacity: int, now: datetime) -> None:
    exists = conn.execute(select(operator_t.c.user_id).where(operator_t.c.user_id == user_id))
    if exists.first() is None:
        conn.execute(
            insert(operator_t).values(
                user_id=user_id,
                status="offline",
                capacity=capacity,
                connected=_has_online_device(conn, user_id),
                open_chats=0,
                created_at=now,
            )
        )


def set_capacity(engine: Engine, operator_id: str, capacity: int) -> Outcome:
    with engine.begin() as conn:
        changed = conn.execute(
            update(operator_t).where(operator_t.c.user_id == operator_id).values(capacity=capacity)
        ).rowcount
    if not changed:
        raise Conflict(404, "unknown_operator", "no such operator")
    return Outcome(floor_changed=True, route=True)


def set_status(engine: Engine, operator_id: str, status: OperatorStatus, now: datetime) -> Outcome:
    """`offline` signs off: the operator's open tickets go back to the queue now."""
    with engine.begin() as conn:
        changed = conn.execute(
            update(operator_t).where(operator_t.c.user_id == operator_id).values(status=status)
        ).rowcount
        if not changed:
            raise Conflict(403, "forbidden", "you are not an operator")
        outcome = Outcome(floor_changed=True, route=status == "online")
        if status == "offline":
            for ticket in _open_tickets_of(conn, operator_id):
                outcome.merge(_requeue(conn, ticket, now, "agent_signed_off", front=True))
    return outcome


def set_connected(engine: Engine, user_id: str, connected: bool, now: datetime) -> Outcome | None:
    """Record an operator's connection; None when the user is no operator.
    Coming back clears the grace; going away starts it."""
    with engine.begin() as conn:
        row = conn.execute(
            select(operator_t.c.connected).where(operator_t.c.user_id == user_id)
        ).first()
        if row is None:
            return None
        if row.connected == connected:
            return Outcome()
        conn.execute(
            update(operator_t)
            .where(operator_t.c.user_id == user_id)
            .values(connected=connected, disconnected_at=None if connected else now)
        )
    return Outcome(floor_changed=True, route=connected)


def reconcile_connections(engine: Engine, now: datetime) -> Outcome:
    """Bring every operator's `connected` in line with their devices' presence
    (an event missed while the router was down)."""
    outcome = Outcome()
    with reading(engine) as conn:
        rows = conn.execute(select(operator_t.c.user_id, operator_t.c.connected)).all()
        # Operators' devices only: the sweep runs every few seconds.
        online = {
            row.user_id
            for row in conn.execute(
                select(device_t.c.user_id)
                .join(operator_t, operator_t.c.user_id == device_t.c.user_id)
                .where(device_t.c.online.is_(True), device_t.c.revoked_at.is_(None))
            )
        }
    for row in rows:
        if row.connected != (row.user_id in online):
            change = set_connected(engine, row.user_id, row.user_id in online, now)
            if change is not None:
                outcome.merge(change)
    return outcome


def release_gone(engine: Engine, cutoff: datetime, now: datetime) -> Outcome:
    """Operators disconnected since before `cutoff` (the grace) lose their
    open tickets to the front of the queue."""
    outcome = Outcome()
    with engine.begin() as conn:
        gone = conn.execute(
            select(operator_t.c.user_id).where(
                operator_t.c.connected.is_(False),
                operator_t.c.disconnected_at <= cutoff,
                operator_t.c.open_chats > 0,
            )
        ).all()
        for row in gone:
            for ticket in _open_tickets_of(conn, row.user_id):
                outcome.merge(_requeue(conn, ticket, now, "agent_offline", front=True))
    return outcome


# --- the first-response SLA ------------------------------------------------------------


def open_deadlines(engine: Engine) -> list[tuple[str, int, datetime]]:
    """(ticket_id, version, deadline) of assigned tickets still awaiting a first response."""
    with reading(engine) as conn:
        rows = conn.execute(
            select(ticket_t.c.id, ticket_t.c.version, ticket_t.c.sla_deadline).where(
                ticket_t.c.status == "assigned",
                ticket_t.c.first_response_at.is_(None),
                ticket_t.c.sla_deadline.is_not(None),
            )
        )
        return [(row.id, row.version, row.sla_deadline) for row in rows]


def check_first_response(engine: Engine, ticket_id: str, version: int, now: datetime) -> Outcome:
    """At a ticket's deadline: answered, record when; not answered, escalate and
    give it back (skipping the operator who missed it)."""
    with engine.begin() as conn:
        ticket = _ticket_for_update(conn, ticket_id)
        if ticket.status != "assigned" or ticket.version != version:
            return Outcome()
        if ticket.first_response_at is not None or ticket.sla_deadline is None:
            return Outcome()
        answered = _first_answer(conn, ticket.conv_id, ticket.operator_id, ticket.assigned_at)
        if answered is not None:
            conn.execute(
                update(ticket_t)
                .where(ticket_t.c.id == ticket_id)
                .values(first_response_at=answered)
            )
            return Outcome()
        if ticket.sla_deadline > now:
            return Outcome()
        return _requeue(
            conn,
            ticket,
            now,
            "no_first_response",
            front=True,
            skip=ticket.operator_id,
            escalate=True,
        )


def _first_answer(
    conn: Connection, conv_id: str, operator_id: str, since: datetime
) -> datetime | None:
    found: datetime | None = conn.execute(
        select(func.min(message_t.c.created_at)).where(
            message_t.c.conv_id == conv_id,
            message_t.c.sender_id == operator_id,
            message_t.c.created_at >= since,
        )
    ).scalar()
    return found


# --- shared pieces --------------------------------------------------------------------------


def _ticket_for_update(conn: Connection, ticket_id: str) -> Any:
    row = conn.execute(select(ticket_t).where(ticket_t.c.id == ticket_id).with_for_update()).first()
    if row is None:
        raise Conflict(404, "not_found", "no such ticket")
    return row


def _brief(ticket: Any, *, priority: str | None = None, agent: Person | None = None) -> Brief:
    """The ticket after a change (its version one higher)."""
    level: Priority = priority or ticket.priority  # type: ignore[assignment]
    return Brief(ticket.id, ticket.user_id, ticket.conv_id, ticket.version + 1, level, agent)


def _person(conn: Connection, user_id: str) -> Person:
    name = conn.execute(select(user_t.c.display_name).where(user_t.c.id == user_id)).scalar_one()
    return Person(id=user_id, name=name)


def _require_handler(ticket: Any, actor: User) -> None:
    """The ticket's operator, or a supervisor."""
    if actor.role == "supervisor" or (actor.role == "operator" and ticket.operator_id == actor.id):
        return
    if actor.role in OPERATOR_ROLES:
        raise Conflict(403, "forbidden", "the ticket is another operator's")
    raise Conflict(404, "not_found", "no such ticket")


def _open_tickets_of(conn: Connection, operator_id: str) -> list[Any]:
    return list(
        conn.execute(
            select(ticket_t)
            .where(ticket_t.c.operator_id == operator_id, ticket_t.c.status == "assigned")
            .with_for_update()
        ).all()
    )


def _free_slot(conn: Connection, operator_id: str) -> None:
    conn.execute(
        update(operator_t)
        .where(operator_t.c.user_id == operator_id, operator_t.c.open_chats > 0)
        .values(open_chats=operator_t.c.open_chats - 1)
    )


def _add_member(conn: Connection, conv_id: str, user_id: str, now: datetime) -> None:
    """Join the conversation unless already in it (one statement). Everything
    said before the operator joined counts as unread for them."""
    present = (
        select(member_t.c.user_id)
        .where(member_t.c.conv_id == conv_id, member_t.c.user_id == user_id)
        .exists()
    )
    row = select(
        literal(conv_id), literal(user_id), literal(0), literal(now), literal(False)
    ).where(~present)
    conn.execute(
        insert(member_t).from_select(
            ["conv_id", "user_id", "last_read_seq", "joined_at", "muted"], row
        )
    )


def _remove_member(conn: Connection, conv_id: str, user_id: str) -> None:
    conn.execute(
        delete(member_t).where(member_t.c.conv_id == conv_id, member_t.c.user_id == user_id)
    )


def _has_online_device(conn: Connection, user_id: str) -> bool:
    return (
        conn.execute(
            select(device_t.c.id).where(
                device_t.c.user_id == user_id,
                device_t.c.online.is_(True),
                device_t.c.revoked_at.is_(None),
            )
        ).first()
        is not None
    )


def _record(
    conn: Connection,
    ticket_id: str,
    kind: str,
    at: datetime,
    *,
    operator_id: str | None = None,
    actor_id: str | None = None,
    detail: str | None = None,
) -> None:
    conn.execute(
        insert(event_t).values(
            ticket_id=ticket_id,
            kind=kind,
            at=at,
            operator_id=operator_id,
            actor_id=actor_id,
            detail=detail,
        )
    )
