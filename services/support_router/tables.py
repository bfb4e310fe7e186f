"""The tables live support reads and writes, as SQLAlchemy Core handles."""

from __future__ import annotations

from core.models import (
    Conversation,
    Device,
    Member,
    Message,
    Operator,
    SupportTicket,
    TicketEvent,
    User,
)

ticket_t = SupportTicket.__table__  # type: ignore[attr-defined]
operator_t = Operator.__table__  # type: ignore[attr-defined]
user_t = User.__table__  # type: ignore[attr-defined]
event_t = TicketEvent.__table__  # type: ignore[attr-defined]
member_t = Member.__table__  # type: ignore[attr-defined]
conversation_t = Conversation.__table__  # type: ignore[attr-defined]
message_t = Message.__table__  # type: ignore[attr-defined]
device_t = Device.__table__  # type: ignore[attr-defined]
