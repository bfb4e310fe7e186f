"""Table models. The database is the source of truth; the broker only carries.

Invariants kept here:
- `Conversation.last_seq` is the highest `Message.seq` of that conversation;
  seqs run 1..last_seq with no gap (allocated under the conversation's row lock).
- (`conv_id`, `sender_id`, `client_msg_id`) is unique: a re-send is a duplicate.
- `Message.delivered` is false until the broker acknowledged the copies to every
  member; the persistence service re-delivers what stays false (outbox).
- `Member.last_read_seq` never moves backwards and never passes `last_seq`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from core.timefmt import utcnow

ID_LEN = 64


class User(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=ID_LEN)
    username: str = Field(unique=True, index=True, max_length=64)
    password_hash: str = Field(max_length=255)
    display_name: str = Field(max_length=100)
    role: str = Field(default="user", max_length=16)
    created_at: datetime = Field(default_factory=utcnow)


class AccessToken(SQLModel, table=True):
    __tablename__ = "access_token"

    token_hash: str = Field(primary_key=True, max_length=64)
    user_id: str = Field(foreign_key="user.id", index=True, max_length=ID_LEN)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime


class Device(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=ID_LEN)
    user_id: str = Field(foreign_key="user.id", index=True, max_length=ID_LEN)
    platform: str = Field(max_length=16)
    push_token: str | None = Field(default=None, max_length=255)
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None
    # Presence, as the device last announced it (services/presence).
    online: bool = False
    last_seen_at: datetime | None = None


class Conversation(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=ID_LEN)
    kind: str = Field(max_length=16)
    title: str | None = Field(default=None, max_length=200)
    # "<smaller user id>|<larger user id>" for direct conversations: one per pair.
    direct_key: str | None = Field(default=None, unique=True, max_length=2 * ID_LEN + 1)
    created_at: datetime = Field(default_factory=utcnow)
    last_seq: int = 0
    last_message_at: datetime | None = Field(default=None, index=True)


class Member(SQLModel, table=True):
    conv_id: str = Field(foreign_key="conversation.id", primary_key=True, max_length=ID_LEN)
    user_id: str = Field(foreign_key="user.id", primary_key=True, index=True, max_length=ID_LEN)
    last_read_seq: int = 0
    joined_at: datetime = Field(default_factory=utcnow)
    # No push notifications for this conversation (the member muted it).
    muted: bool = False


class Media(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=ID_LEN)
    uploader_id: str = Field(foreign_key="user.id", index=True, max_length=ID_LEN)
    kind: str = Field(max_length=16)
    mime: str = Field(max_length=100)
    size: int
    name: str = Field(max_length=255)
    storage_key: str = Field(max_length=255)
    width: int | None = None
    height: int | None = None
    duration_ms: int | None = None
    created_at: datetime = Field(default_factory=utcnow)


class Message(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("conv_id", "seq", name="uq_message_conv_seq"),
        UniqueConstraint("conv_id", "sender_id", "client_msg_id", name="uq_message_client_id"),
        Index("ix_message_undelivered", "delivered", "created_at"),
    )

    id: str = Field(primary_key=True, max_length=ID_LEN)
    conv_id: str = Field(foreign_key="conversation.id", max_length=ID_LEN)
    seq: int
    sender_id: str = Field(foreign_key="user.id", max_length=ID_LEN)
    kind: str = Field(max_length=16)
    text: str | None = Field(default=None, max_length=4000)
    media_id: str | None = Field(
        default=None, foreign_key="media.id", index=True, max_length=ID_LEN
    )
    reply_to: str | None = Field(default=None, max_length=ID_LEN)
    client_msg_id: str = Field(max_length=ID_LEN)
    created_at: datetime = Field(default_factory=utcnow)
    delivered: bool = False


class Call(SQLModel, table=True):
    """One call between two users. `status` is `ringing` or `active` while live;
    every other status is final. Invariant: a live call holds a `CallLine` for
    each party, a final one holds none."""

    __table_args__ = (
        Index("ix_call_caller", "caller_id", "created_at"),
        Index("ix_call_callee", "callee_id", "created_at"),
        Index("ix_call_live", "status", "ring_deadline"),
    )

    id: str = Field(primary_key=True, max_length=ID_LEN)
    caller_id: str = Field(foreign_key="user.id", max_length=ID_LEN)
    callee_id: str = Field(foreign_key="user.id", max_length=ID_LEN)
    conv_id: str = Field(foreign_key="conversation.id", max_length=ID_LEN)
    media: str = Field(max_length=8)
    status: str = Field(max_length=16)
    end_reason: str | None = Field(default=None, max_length=32)
    answered_device_id: str | None = Field(default=None, max_length=ID_LEN)
    created_at: datetime = Field(default_factory=utcnow)
    ring_deadline: datetime
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    # From LiveKit's webhooks: who actually connected to the room, and when.
    caller_joined_at: datetime | None = None
    callee_joined_at: datetime | None = None
    caller_left_at: datetime | None = None
    callee_left_at: datetime | None = None
    # Set once the room was deleted through RoomService after the call ended.
    room_closed_at: datetime | None = None
    # Seen by the callee in the app (only meaningful for missed calls).
    seen_at: datetime | None = None
    # Server-side recording through LiveKit Egress, when configured.
    egress_id: str | None = Field(default=None, max_length=ID_LEN)
    recording_status: str | None = Field(default=None, max_length=16)
    recording_location: str | None = Field(default=None, max_length=1024)


class CallLine(SQLModel, table=True):
    """A user's one live call. The primary key makes "is this user free?" and
    "take the line" one atomic insert, whatever the number of callsig instances."""

    __tablename__ = "call_line"

    user_id: str = Field(foreign_key="user.id", primary_key=True, max_length=ID_LEN)
    call_id: str = Field(foreign_key="call.id", index=True, max_length=ID_LEN)


class WebhookReceipt(SQLModel, table=True):
    """LiveKit webhook event ids already handled (LiveKit may send one twice)."""

    __tablename__ = "webhook_receipt"

    id: str = Field(primary_key=True, max_length=ID_LEN)
    event: str = Field(max_length=64)
    received_at: datetime = Field(default_factory=utcnow)


class Operator(SQLModel, table=True):
    """A user with the operator (or supervisor) role, as the support router sees them.

    `status` is what the operator chose; `connected` is whether any of their
    devices is online (from presence). `open_chats` counts their assigned
    tickets and changes only in the transaction that changes a ticket, so a
    claim can check capacity atomically."""

    user_id: str = Field(foreign_key="user.id", primary_key=True, max_length=ID_LEN)
    status: str = Field(default="offline", max_length=8)
    capacity: int = 3
    connected: bool = False
    disconnected_at: datetime | None = None
    open_chats: int = 0
    last_assigned_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class SupportTicket(SQLModel, table=True):
    """A user's request for help and its `support` conversation.

    `version` grows by one with every change of state (events carry it).
    `front` marks a ticket the system put back (its operator went offline, or
    the SLA passed): it goes before every other waiting ticket."""

    __tablename__ = "support_ticket"
    __table_args__ = (
        Index("ix_ticket_queue", "status", "queued_at"),
        Index("ix_ticket_user", "user_id", "created_at"),
        Index("ix_ticket_operator", "operator_id", "status"),
    )

    id: str = Field(primary_key=True, max_length=ID_LEN)
    user_id: str = Field(foreign_key="user.id", max_length=ID_LEN)
    conv_id: str = Field(foreign_key="conversation.id", unique=True, max_length=ID_LEN)
    subject: str = Field(max_length=200)
    priority: str = Field(max_length=8)
    status: str = Field(max_length=16)
    version: int = 1
    operator_id: str | None = Field(default=None, foreign_key="user.id", max_length=ID_LEN)
    created_at: datetime = Field(default_factory=utcnow)
    queued_at: datetime | None = None
    front: bool = False
    # An operator the router avoids for this ticket (they missed its SLA).
    skip_operator_id: str | None = Field(default=None, max_length=ID_LEN)
    assigned_at: datetime | None = None
    first_response_at: datetime | None = None
    sla_deadline: datetime | None = None
    closed_at: datetime | None = None
    closed_by: str | None = Field(default=None, max_length=8)
    escalations: int = 0
    rating: int | None = None
    rating_comment: str | None = Field(default=None, max_length=1000)


class TicketEvent(SQLModel, table=True):
    """What happened to a ticket, in order (assignments, transfers, escalations)."""

    __tablename__ = "support_ticket_event"
    # The floor's figures read the recent assignments.
    __table_args__ = (Index("ix_ticket_event_kind_at", "kind", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: str = Field(foreign_key="support_ticket.id", index=True, max_length=ID_LEN)
    at: datetime = Field(default_factory=utcnow)
    kind: str = Field(max_length=32)
    operator_id: str | None = Field(default=None, max_length=ID_LEN)
    actor_id: str | None = Field(default=None, max_length=ID_LEN)
    detail: str | None = Field(default=None, max_length=255)


class CannedReply(SQLModel, table=True):
    """An operator's prepared answer; `shared` ones (kept by supervisors) are everyone's."""

    __tablename__ = "canned_reply"

    id: str = Field(primary_key=True, max_length=ID_LEN)
    owner_id: str = Field(foreign_key="user.id", index=True, max_length=ID_LEN)
    shared: bool = False
    title: str = Field(max_length=100)
    text: str = Field(max_length=4000)
    created_at: datetime = Field(default_factory=utcnow)


class PresenceAnnouncement(SQLModel, table=True):
    """What a user's conversation peers were last told (services/presence).

    Every tracker instance sees every device announcement; changing this row
    (a compare-and-set) is what makes one of them, and only one, tell the peers.
    """

    __tablename__ = "presence_announcement"

    user_id: str = Field(primary_key=True, foreign_key="user.id", max_length=ID_LEN)
    online: bool
    announced_at: datetime = Field(default_factory=utcnow)


class PushWindow(SQLModel, table=True):
    """An open collapse window of message pushes (services/push): the messages
    of one conversation for one user until `due_at` make one push.

    The row is deleted by the instance that sends the push, in the statement
    that reads it, so exactly one instance sends it.
    """

    __tablename__ = "push_window"
    __table_args__ = (Index("ix_push_window_due", "due_at"),)

    user_id: str = Field(primary_key=True, foreign_key="user.id", max_length=ID_LEN)
    conv_id: str = Field(primary_key=True, foreign_key="conversation.id", max_length=ID_LEN)
    count: int
    # The newest message counted (by seq), as its wire JSON: the push shows it.
    last_seq: int
    last_message: str
    due_at: datetime


class PushQuota(SQLModel, table=True):
    """Message pushes sent to a user in the minute from `period_start`: the
    per-user limit, counted once for all push instances."""

    __tablename__ = "push_quota"

    user_id: str = Field(primary_key=True, foreign_key="user.id", max_length=ID_LEN)
    period_start: datetime
    used: int
