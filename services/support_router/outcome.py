"""What a change of a ticket decided (`Outcome`), and the errors and rules the
changes share."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bridge.wire.support import (
    DeskEventName,
    Person,
    Priority,
    SupportEventName,
    SupportReason,
)


class Conflict(Exception):
    """A change the ticket's or operator's current state does not allow."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Brief:
    """What the user's event needs, known inside the transaction (no read after)."""

    ticket_id: str
    user_id: str
    conv_id: str
    version: int
    priority: Priority
    agent: Person | None


@dataclass(frozen=True, slots=True)
class Notice:
    """Tell the ticket's user `user_event` (if any) and each operator in `desk`."""

    ticket: Brief
    user_event: SupportEventName | None
    reason: SupportReason | None
    desk: tuple[tuple[str, DeskEventName], ...] = ()

    @property
    def ticket_id(self) -> str:
        return self.ticket.ticket_id


@dataclass
class Outcome:
    notices: list[Notice] = field(default_factory=list)
    queue_changed: bool = False
    floor_changed: bool = False
    # Conversations whose members changed (cached member lists must go).
    members_changed: list[str] = field(default_factory=list)
    # First-response deadlines to watch: (ticket_id, version, deadline).
    deadlines: list[tuple[str, int, datetime]] = field(default_factory=list)
    # The router should run (a slot freed, a ticket came back, someone came online).
    route: bool = False

    def merge(self, other: Outcome) -> Outcome:
        self.notices += other.notices
        self.queue_changed |= other.queue_changed
        self.floor_changed |= other.floor_changed
        self.members_changed += other.members_changed
        self.deadlines += other.deadlines
        self.route |= other.route
        return self

    @property
    def empty(self) -> bool:
        return not (self.notices or self.queue_changed or self.floor_changed or self.route)


@dataclass(frozen=True, slots=True)
class Rules:
    """The router's settings that the store's decisions depend on."""

    aging_seconds: float
    sla_seconds: dict[str, float]

    def deadline(self, priority: str, assigned_at: datetime) -> datetime:
        return assigned_at + timedelta(seconds=self.sla_seconds[priority])
