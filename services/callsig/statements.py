"""The call state machine's SQL, built once.

Building a statement and its cache key costs more CPU than running it on a
local database (measured: most of a transition's time went there), so every
statement of the hot path is a module constant with bind parameters.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, bindparam, case, delete, insert, or_, select, update
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import BindParameter

from core.models import Call, CallLine, Conversation, Device, Member, User, WebhookReceipt

call_t = Call.__table__  # type: ignore[attr-defined]
line_t = CallLine.__table__  # type: ignore[attr-defined]
user_t = User.__table__  # type: ignore[attr-defined]
member_t = Member.__table__  # type: ignore[attr-defined]
conversation_t = Conversation.__table__  # type: ignore[attr-defined]
device_t = Device.__table__  # type: ignore[attr-defined]
receipt_t = WebhookReceipt.__table__  # type: ignore[attr-defined]

_IDS: BindParameter[Any] = bindparam("ids", expanding=True)

_caller_u = aliased(user_t)
_callee_u = aliased(user_t)
# A call with its parties' display names (tokens and push notices carry them).
CALL_WITH_NAMES = select(
    call_t,
    _caller_u.c.display_name.label("caller_name"),
    _callee_u.c.display_name.label("callee_name"),
).select_from(
    call_t.join(_caller_u, _caller_u.c.id == call_t.c.caller_id).join(
        _callee_u, _callee_u.c.id == call_t.c.callee_id
    )
)
CALL_BY_ID = CALL_WITH_NAMES.where(call_t.c.id == bindparam("call_id"))
CALL_BY_ID_LOCKED = CALL_BY_ID.with_for_update(of=call_t)

# The live calls holding these users' lines; locked (sorted, so two instances
# lock in one order) when taken in a transition.
LINES = (
    CALL_WITH_NAMES.add_columns(line_t.c.user_id.label("line_user"))
    .join(line_t, line_t.c.call_id == call_t.c.id)
    .where(line_t.c.user_id.in_(_IDS))
    .order_by(line_t.c.user_id)
)
LINES_LOCKED = LINES.with_for_update(of=line_t)

_mine = aliased(member_t)
_theirs = aliased(member_t)
_a = aliased(user_t)
_b = aliased(user_t)
_earlier = aliased(call_t)
# Everything an invite must know before it looks at lines, in one round trip:
# whether the call id is taken, a conversation both users are in (the direct
# one first), and both display names (null for an unknown user).
INVITE_FACTS = select(
    select(_earlier.c.id)
    .where(_earlier.c.id == bindparam("call_id"))
    .correlate(None)
    .scalar_subquery()
    .label("earlier"),
    select(conversation_t.c.id)
    .join(
        _mine,
        and_(_mine.c.conv_id == conversation_t.c.id, _mine.c.user_id == bindparam("a")),
    )
    .join(
        _theirs,
        and_(_theirs.c.conv_id == conversation_t.c.id, _theirs.c.user_id == bindparam("b")),
    )
    .order_by(case((conversation_t.c.kind == "direct", 0), else_=1), conversation_t.c.id)
    .limit(1)
    .correlate(None)
    .scalar_subquery()
    .label("conv_id"),
    select(_a.c.display_name)
    .where(_a.c.id == bindparam("a"))
    .correlate(None)
    .scalar_subquery()
    .label("a_name"),
    select(_b.c.display_name)
    .where(_b.c.id == bindparam("b"))
    .correlate(None)
    .scalar_subquery()
    .label("b_name"),
)

INSERT_CALL = insert(call_t)
INSERT_LINES = insert(line_t)
DELETE_LINES = delete(line_t).where(line_t.c.call_id == bindparam("call_id"))
FINISH = (
    update(call_t)
    .where(call_t.c.id == bindparam("b_id"))
    .values(
        status=bindparam("b_status"), end_reason=bindparam("b_reason"), ended_at=bindparam("b_at")
    )
)
ANSWER = (
    update(call_t)
    .where(call_t.c.id == bindparam("b_id"))
    .values(status="active", answered_at=bindparam("b_at"), answered_device_id=bindparam("b_dev"))
)
ACTIVE_DEVICE = select(device_t.c.id).where(
    device_t.c.id == bindparam("device_id"),
    device_t.c.user_id == bindparam("user_id"),
    device_t.c.revoked_at.is_(None),
)

# Sweeps (not hot, but built once all the same).
RINGING = select(call_t.c.id, call_t.c.ring_deadline).where(call_t.c.status == "ringing")
UNJOINED = select(call_t.c.id).where(
    call_t.c.status == "active",
    call_t.c.answered_at <= bindparam("before"),
    or_(call_t.c.caller_joined_at.is_(None), call_t.c.callee_joined_at.is_(None)),
)
RECEIPT = select(receipt_t.c.id).where(receipt_t.c.id == bindparam("event_id"))
INSERT_RECEIPT = insert(receipt_t)
