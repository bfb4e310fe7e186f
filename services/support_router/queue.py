"""The routing rules, as pure functions (docs/support.md): the queue order with
aging, the operator choice, and the estimated wait. No I/O: the router feeds
them what it read, and the unit tests feed them what they like."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from bridge.wire.support import PRIORITIES, Priority

# Rank 0 is the most urgent.
RANK: dict[str, int] = {name: rank for rank, name in enumerate(PRIORITIES)}
DEFAULT_HANDLING_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class Waiting:
    ticket_id: str
    priority: Priority
    queued_at: datetime
    front: bool
    skip_operator_id: str | None = None


@dataclass(frozen=True, slots=True)
class Candidate:
    operator_id: str
    status: str
    connected: bool
    open_chats: int
    capacity: int
    last_assigned_at: datetime | None
    name: str = ""

    @property
    def eligible(self) -> bool:
        return self.status == "online" and self.connected and self.open_chats < self.capacity


def effective_priority(priority: Priority, waited_seconds: float, aging_seconds: float) -> Priority:
    """One level up per `aging_seconds` waited, at most `urgent`."""
    steps = int(max(0.0, waited_seconds) // aging_seconds) if aging_seconds > 0 else 0
    return PRIORITIES[max(0, RANK[priority] - steps)]


def queue_order(waiting: Sequence[Waiting], now: datetime, aging_seconds: float) -> list[Waiting]:
    """Put-back tickets first, then by effective priority, then oldest first."""

    def key(ticket: Waiting) -> tuple[bool, int, datetime, str]:
        waited = (now - ticket.queued_at).total_seconds()
        level = RANK[effective_priority(ticket.priority, waited, aging_seconds)]
        return (not ticket.front, level, ticket.queued_at, ticket.ticket_id)

    return sorted(waiting, key=key)


def pick_operator(candidates: Sequence[Candidate], skip: str | None = None) -> Candidate | None:
    """The eligible operator with the fewest open chats; ties to the one whose
    last assignment is oldest (never assigned first). `skip` is passed over
    unless nobody else is eligible."""
    eligible = [c for c in candidates if c.eligible]
    others = [c for c in eligible if c.operator_id != skip]
    pool = others or eligible
    if not pool:
        return None

    def key(candidate: Candidate) -> tuple[int, float, str]:
        # Never assigned sorts as the oldest assignment of all.
        at = candidate.last_assigned_at
        return (candidate.open_chats, at.timestamp() if at else -math.inf, candidate.operator_id)

    return min(pool, key=key)


def serving_capacity(candidates: Sequence[Candidate]) -> int:
    """Chats the operators online and connected can hold at once."""
    return sum(c.capacity for c in candidates if c.status == "online" and c.connected)


def estimated_wait_seconds(
    position: int, online_capacity: int, handling_seconds: float | None
) -> int | None:
    """`position x average handling time / online capacity`; None when no
    operator is online (nobody can say when one will be)."""
    if online_capacity <= 0:
        return None
    handling = handling_seconds if handling_seconds is not None else DEFAULT_HANDLING_SECONDS
    return math.ceil(position * handling / online_capacity)
