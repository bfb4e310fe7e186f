"""Live support payloads: what users and operators receive about tickets, the
operators' live views (retained), and the services-only wake-ups.

Every event carries the ticket's `version` (it grows by one with each change of
the ticket's state): a client that already saw a higher version of a ticket
drops the older event, so two router instances publishing close together never
leave a client showing a stale state.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from bridge.wire.base import Id, Text, WireModel

Priority = Literal["urgent", "high", "normal", "low"]
PRIORITIES: tuple[Priority, ...] = ("urgent", "high", "normal", "low")
TicketStatus = Literal["queued", "assigned", "closed"]
OperatorStatus = Literal["online", "away", "offline"]
SupportEventName = Literal["queued", "assigned", "transferred", "closed", "error"]
# Why a ticket went (back) to the queue or changed hands.
SupportReason = Literal[
    "new",
    "agent_offline",
    "agent_signed_off",
    "no_first_response",
    "transferred",
    "taken",
    "routed",
    "closed_by_user",
    "closed_by_agent",
]
DeskEventName = Literal["assigned", "unassigned", "closed", "escalated", "updated"]


class Person(WireModel):
    id: Id
    name: str


class SupportEvent(WireModel):
    """`user/{uid}/support`, to the ticket's user. The contract's fields, then
    the extensions: `version`, `reason`, `estimated_wait_seconds`, `priority`."""

    event: SupportEventName
    ticket_id: Id
    conv_id: Id
    position: int | None = None
    agent: Person | None = None
    version: int
    reason: SupportReason | None = None
    estimated_wait_seconds: int | None = None
    priority: Priority | None = None


class TicketView(WireModel):
    """A ticket as operators see it (HTTP and the desk events)."""

    ticket_id: Id
    conv_id: Id
    user: Person
    subject: str
    priority: Priority
    # The priority the queue orders by: raised one level per aging step.
    effective_priority: Priority
    status: TicketStatus
    version: int
    agent: Person | None
    position: int | None
    created_at: str
    queued_at: str | None
    assigned_at: str | None
    first_response_at: str | None
    sla_deadline: str | None
    closed_at: str | None
    closed_by: Literal["user", "agent"] | None
    escalations: int
    rating: int | None
    unread_count: int | None = None


class DeskEvent(WireModel):
    """`user/{operator_id}/support/desk`, to an operator, about their own chats."""

    event: DeskEventName
    ticket: TicketView
    reason: SupportReason | None = None


class QueueSnapshot(WireModel):
    """Retained on `ops/queue`: every waiting ticket in queue order."""

    tickets: list[TicketView]
    updated_at: str


class OperatorView(WireModel):
    id: Id
    name: str
    status: OperatorStatus
    connected: bool
    # Whether the router may give this operator a ticket right now.
    available: bool
    open_chats: int
    capacity: int
    supervisor: bool
    last_assigned_at: str | None


class WaitStats(WireModel):
    """Figures over the tickets assigned in the last hour."""

    waiting_now: int
    longest_wait_seconds: float | None
    assigned_last_hour: int
    median_wait_seconds: float | None
    p90_wait_seconds: float | None
    median_first_response_seconds: float | None
    closed_last_hour: int
    average_rating: float | None


class FloorSnapshot(WireModel):
    """Retained on `ops/floor` (supervisors only): operators, load and waits."""

    operators: list[OperatorView]
    stats: WaitStats
    updated_at: str


class Wake(WireModel):
    """`svc/support/wake` (services only): the API changed the queue or an
    operator; a router walks the queue and publishes the live views."""

    reason: Literal["queued", "changed"]


class PresenceChange(WireModel):
    """`svc/presence/changed/{uid}` (services only): a user's devices changed state."""

    user_id: Id
    online: bool


class MembersChanged(WireModel):
    """`svc/conv/members` (services only): a conversation's members changed."""

    conv_id: Id


class CannedReply(WireModel):
    id: Id
    title: Text = Field(max_length=100)
    text: Text = Field(max_length=4000)
    shared: bool
