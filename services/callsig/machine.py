"""The call state machine, in the database: every transition is one transaction.

    invite ──> ringing ──accept──> active ──hangup / left / not joined──> ended
                  │ decline ──> declined      (caller hangup) ──> cancelled
                  │ ring timeout ──> missed   (glare, the larger call id) ──> cancelled
    invite to a callee who is not free ──> busy

Invariants:
- a live call (`ringing`, `active`) holds one `call_line` row per party; the
  line's primary key is the user, so "is this user free?" and "take the line"
  are one insert that cannot race, whatever the number of callsig instances;
- a transition happens only from the state it names, under the call's row lock,
  so two instances (or a timer and a hangup) cannot both apply one;
- glare (A calls B while B calls A, both ringing) always ends with the call
  whose id is smaller, whichever invite is handled first.

Nothing is published from here: each function returns `Effects` (who is told
what), and the service publishes them after the commit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

from sqlalchemy import Connection, Engine, and_, case, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from bridge.wire.calls import CallEventName, CallMedia, ErrorReason, RecordingStatus
from core.models import Call, CallLine, Conversation, Device, Member, User, WebhookReceipt

call_t = Call.__table__  # type: ignore[attr-defined]
line_t = CallLine.__table__  # type: ignore[attr-defined]
user_t = User.__table__  # type: ignore[attr-defined]
member_t = Member.__table__  # type: ignore[attr-defined]
conversation_t = Conversation.__table__  # type: ignore[attr-defined]
device_t = Device.__table__  # type: ignore[attr-defined]
receipt_t = WebhookReceipt.__table__  # type: ignore[attr-defined]

LIVE = ("ringing", "active")
RECORDING_LIVE = ("requested", "starting", "active", "ending")
PushEvent = Literal["incoming", "cancelled", "missed"]
# Another instance took a line or the call id between our read and our insert:
# deciding again sees what it committed. Two retries cover any interleaving of
# the two invites that can touch one pair of lines.
RETRIES = 3

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Party:
    user_id: str
    name: str


@dataclass(frozen=True, slots=True)
class CallView:
    call_id: str
    caller: Party
    callee: Party
    media: CallMedia


@dataclass(frozen=True, slots=True)
class Notice:
    """One event for one user. `token` asks for that user's LiveKit join."""

    user: Party
    event: CallEventName
    call: CallView
    device_id: str | None = None
    reason: str | None = None
    token: bool = False
    recording: RecordingStatus | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    """An `error` event for the sender of a refused action."""

    user_id: str
    call_id: str
    reason: ErrorReason
    from_: str | None = None
    to: str | None = None
    media: CallMedia | None = None


@dataclass
class Effects:
    notices: list[Notice] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    pushes: list[tuple[PushEvent, CallView]] = field(default_factory=list)
    # Users whose retained call state changed.
    state_users: set[str] = field(default_factory=set)
    ringing: dict[str, datetime] = field(default_factory=dict)  # call id -> ring deadline
    answered: list[str] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)
    # LiveKit work to do after the commit.
    start_recording: list[tuple[str, bool]] = field(default_factory=list)  # (call, audio only)
    stop_recording: list[str] = field(default_factory=list)  # egress ids

    def refuse(self, refusal: Refusal) -> Effects:
        self.refusals.append(refusal)
        return self


# --- reading ------------------------------------------------------------------------------

_caller_u = aliased(user_t)
_callee_u = aliased(user_t)
_CALL_WITH_NAMES = select(
    call_t,
    _caller_u.c.display_name.label("caller_name"),
    _callee_u.c.display_name.label("callee_name"),
).select_from(
    call_t.join(_caller_u, _caller_u.c.id == call_t.c.caller_id).join(
        _callee_u, _callee_u.c.id == call_t.c.callee_id
    )
)


def _view(row: Any) -> CallView:
    return CallView(
        call_id=row.id,
        caller=Party(row.caller_id, row.caller_name),
        callee=Party(row.callee_id, row.callee_name),
        media=row.media,
    )


def _locked_call(conn: Connection, call_id: str) -> Any:
    return conn.execute(
        _CALL_WITH_NAMES.where(call_t.c.id == call_id).with_for_update(of=call_t)
    ).one_or_none()


def live_calls(engine: Engine, user_id: str) -> list[tuple[CallView, str, str | None]]:
    """The user's live calls: (call, status, answering device)."""
    query = _CALL_WITH_NAMES.join(line_t, line_t.c.call_id == call_t.c.id).where(
        line_t.c.user_id == user_id
    )
    with engine.connect() as conn:
        return [(_view(r), r.status, r.answered_device_id) for r in conn.execute(query)]


def ringing_deadlines(engine: Engine) -> dict[str, datetime]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(call_t.c.id, call_t.c.ring_deadline).where(call_t.c.status == "ringing")
        )
        return {r.id: r.ring_deadline for r in rows}


def unjoined_since(engine: Engine, answered_before: datetime) -> list[str]:
    """Active calls answered before the cutoff that a party has still not joined."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(call_t.c.id).where(
                call_t.c.status == "active",
                call_t.c.answered_at <= answered_before,
                or_(call_t.c.caller_joined_at.is_(None), call_t.c.callee_joined_at.is_(None)),
            )
        )
        return [r.id for r in rows]


# --- shared steps -----------------------------------------------------------------------


def _finish(
    conn: Connection, call: CallView, status: str, reason: str | None, now: datetime, fx: Effects
) -> None:
    recording = conn.execute(
        select(call_t.c.egress_id, call_t.c.recording_status).where(call_t.c.id == call.call_id)
    ).one()
    if recording.egress_id and recording.recording_status in RECORDING_LIVE:
        fx.stop_recording.append(recording.egress_id)
    conn.execute(
        update(call_t)
        .where(call_t.c.id == call.call_id)
        .values(status=status, end_reason=reason, ended_at=now)
    )
    conn.execute(delete(line_t).where(line_t.c.call_id == call.call_id))
    fx.ended.append(call.call_id)
    fx.state_users.update({call.caller.user_id, call.callee.user_id})


def _miss(conn: Connection, call: CallView, now: datetime, fx: Effects) -> None:
    _finish(conn, call, "missed", "no_answer", now, fx)
    fx.notices.append(Notice(call.caller, "ended", call, reason="no_answer"))
    fx.notices.append(Notice(call.callee, "missed", call))
    fx.pushes.append(("missed", call))


def _transaction(engine: Engine, work: Callable[[Connection], T]) -> T:
    for attempt in range(RETRIES):
        try:
            with engine.begin() as conn:
                return work(conn)
        except IntegrityError:
            if attempt == RETRIES - 1:
                raise
    raise AssertionError("unreachable")


# --- invite -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InviteRequest:
    call_id: str
    caller_id: str
    callee_id: str
    media: CallMedia
    now: datetime
    ring_timeout: timedelta


def invite(engine: Engine, request: InviteRequest) -> Effects:
    return _transaction(engine, lambda conn: _invite(conn, request))


def _invite(conn: Connection, rq: InviteRequest) -> Effects:
    fx = Effects()
    refusal = Refusal(rq.caller_id, rq.call_id, "self_call", rq.caller_id, rq.callee_id, rq.media)
    if rq.callee_id == rq.caller_id:
        return fx.refuse(refusal)
    earlier = conn.execute(_CALL_WITH_NAMES.where(call_t.c.id == rq.call_id)).one_or_none()
    if earlier is not None:
        return _repeat_invite(earlier, rq, fx, refusal)
    names: dict[str, str] = dict(
        conn.execute(
            select(user_t.c.id, user_t.c.display_name).where(
                user_t.c.id.in_([rq.caller_id, rq.callee_id])
            )
        ).all()
    )
    if rq.callee_id not in names:
        return fx.refuse(_with_reason(refusal, "unknown_callee"))
    conv_id = _shared_conversation(conn, rq.caller_id, rq.callee_id)
    if conv_id is None:
        return fx.refuse(_with_reason(refusal, "no_shared_conversation"))
    call = CallView(
        rq.call_id,
        Party(rq.caller_id, names[rq.caller_id]),
        Party(rq.callee_id, names[rq.callee_id]),
        rq.media,
    )
    lines = _lines_of(conn, [rq.caller_id, rq.callee_id], rq.now, fx)
    held = lines.get(rq.caller_id)
    if held is not None:
        glare = (
            held.status == "ringing"
            and held.caller_id == rq.callee_id
            and held.callee_id == rq.caller_id
        )
        if not glare:
            return fx.refuse(_with_reason(refusal, "already_in_call"))
        if rq.call_id > held.id:
            # The other call wins: this one is over before it rang.
            _insert_call(conn, rq, conv_id, "cancelled", end_reason="glare")
            fx.notices.append(Notice(call.caller, "ended", call, reason="glare"))
            return fx
        other = _view(held)
        _finish(conn, other, "cancelled", "glare", rq.now, fx)
        fx.notices.append(Notice(other.caller, "ended", other, reason="glare"))
        fx.notices.append(Notice(other.callee, "cancelled", other, reason="glare"))
        fx.pushes.append(("cancelled", other))
    elif rq.callee_id in lines:
        _insert_call(conn, rq, conv_id, "busy", end_reason="busy")
        fx.notices.append(Notice(call.caller, "busy", call))
        return fx
    _insert_call(conn, rq, conv_id, "ringing")
    conn.execute(
        insert(line_t),
        [{"user_id": u, "call_id": rq.call_id} for u in sorted([rq.caller_id, rq.callee_id])],
    )
    _ring(call, fx)
    fx.ringing[rq.call_id] = rq.now + rq.ring_timeout
    return fx


def _ring(call: CallView, fx: Effects) -> None:
    fx.notices.append(Notice(call.caller, "ringing", call, token=True))
    fx.notices.append(Notice(call.callee, "incoming", call, token=True))
    fx.pushes.append(("incoming", call))
    fx.state_users.update({call.caller.user_id, call.callee.user_id})


def _repeat_invite(earlier: Any, rq: InviteRequest, fx: Effects, refusal: Refusal) -> Effects:
    """The same invite again (the broker redelivers what was not acknowledged):
    tell its outcome again, since the first telling may never have gone out."""
    same = (earlier.caller_id, earlier.callee_id, earlier.media) == (
        rq.caller_id,
        rq.callee_id,
        rq.media,
    )
    if not same:
        return fx.refuse(_with_reason(refusal, "call_id_taken"))
    call = _view(earlier)
    if earlier.status == "ringing":
        _ring(call, fx)
        fx.ringing[call.call_id] = earlier.ring_deadline
    elif earlier.status == "busy":
        fx.notices.append(Notice(call.caller, "busy", call))
    return fx


def _with_reason(refusal: Refusal, reason: ErrorReason) -> Refusal:
    return Refusal(
        refusal.user_id, refusal.call_id, reason, refusal.from_, refusal.to, refusal.media
    )


def _shared_conversation(conn: Connection, a: str, b: str) -> str | None:
    """A conversation both are members of; the direct one when there is one."""
    mine = aliased(member_t)
    theirs = aliased(member_t)
    query = (
        select(conversation_t.c.id)
        .join(mine, and_(mine.c.conv_id == conversation_t.c.id, mine.c.user_id == a))
        .join(theirs, and_(theirs.c.conv_id == conversation_t.c.id, theirs.c.user_id == b))
        .order_by(case((conversation_t.c.kind == "direct", 0), else_=1), conversation_t.c.id)
        .limit(1)
    )
    found: str | None = conn.execute(query).scalar()
    return found


def _lines_of(
    conn: Connection, user_ids: Sequence[str], now: datetime, fx: Effects
) -> dict[str, Any]:
    """The live call holding each user's line, locked. A ringing call past its
    deadline (its timer has not fired yet, or its instance died) is ended as
    missed here and frees the line."""
    rows = conn.execute(
        _CALL_WITH_NAMES.add_columns(line_t.c.user_id.label("line_user"))
        .join(line_t, line_t.c.call_id == call_t.c.id)
        .where(line_t.c.user_id.in_(list(user_ids)))
        .order_by(line_t.c.user_id)
        .with_for_update(of=line_t)
    ).all()
    held: dict[str, Any] = {}
    expired: set[str] = set()
    for row in rows:
        if row.status == "ringing" and row.ring_deadline <= now:
            if row.id not in expired:
                expired.add(row.id)
                _miss(conn, _view(row), now, fx)
            continue
        held[row.line_user] = row
    return held


def _insert_call(
    conn: Connection, rq: InviteRequest, conv_id: str, status: str, end_reason: str | None = None
) -> None:
    final = status not in LIVE
    conn.execute(
        insert(call_t).values(
            id=rq.call_id,
            caller_id=rq.caller_id,
            callee_id=rq.callee_id,
            conv_id=conv_id,
            media=rq.media,
            status=status,
            end_reason=end_reason,
            created_at=rq.now,
            ring_deadline=rq.now + rq.ring_timeout,
            ended_at=rq.now if final else None,
        )
    )


# --- answer, refuse, end ---------------------------------------------------------------


def _participant_check(
    row: Any, user_id: str, call_id: str, *, callee_only: bool
) -> Refusal | None:
    if row is None:
        return Refusal(user_id, call_id, "unknown_call")
    base = Refusal(user_id, call_id, "not_participant", row.caller_id, row.callee_id, row.media)
    if user_id not in (row.caller_id, row.callee_id):
        # Says nothing about the call to someone who is not in it.
        return Refusal(user_id, call_id, "not_participant")
    if callee_only and user_id != row.callee_id:
        return _with_reason(base, "not_callee")
    return None


def accept(engine: Engine, call_id: str, user_id: str, device_id: str, now: datetime) -> Effects:
    def work(conn: Connection) -> Effects:
        fx = Effects()
        row = _locked_call(conn, call_id)
        refusal = _participant_check(row, user_id, call_id, callee_only=True)
        if refusal is not None:
            return fx.refuse(refusal)
        call = _view(row)
        base = Refusal(user_id, call_id, "not_ringing", row.caller_id, row.callee_id, row.media)
        if row.status == "ringing" and row.ring_deadline <= now:
            _miss(conn, call, now, fx)
            return fx.refuse(base)
        if row.status != "ringing":
            return fx.refuse(base)
        owned = conn.execute(
            select(device_t.c.id).where(
                device_t.c.id == device_id,
                device_t.c.user_id == user_id,
                device_t.c.revoked_at.is_(None),
            )
        ).first()
        if owned is None:
            return fx.refuse(_with_reason(base, "unknown_device"))
        conn.execute(
            update(call_t)
            .where(call_t.c.id == call_id)
            .values(status="active", answered_at=now, answered_device_id=device_id)
        )
        for party in (call.caller, call.callee):
            fx.notices.append(Notice(party, "accepted", call, device_id=device_id, token=True))
        fx.state_users.update({call.caller.user_id, call.callee.user_id})
        fx.answered.append(call_id)
        return fx

    return _transaction(engine, work)


def decline(engine: Engine, call_id: str, user_id: str, now: datetime) -> Effects:
    def work(conn: Connection) -> Effects:
        fx = Effects()
        row = _locked_call(conn, call_id)
        refusal = _participant_check(row, user_id, call_id, callee_only=True)
        if refusal is not None:
            return fx.refuse(refusal)
        if row.status != "ringing":
            return fx.refuse(
                Refusal(user_id, call_id, "not_ringing", row.caller_id, row.callee_id, row.media)
            )
        _decline(conn, _view(row), now, fx)
        return fx

    return _transaction(engine, work)


def _decline(conn: Connection, call: CallView, now: datetime, fx: Effects) -> None:
    _finish(conn, call, "declined", "declined", now, fx)
    fx.notices.append(Notice(call.caller, "declined", call))
    # The callee's other devices stop ringing; offline ones clear their notification.
    fx.notices.append(Notice(call.callee, "declined", call))
    fx.pushes.append(("cancelled", call))


def hangup(engine: Engine, call_id: str, user_id: str, now: datetime) -> Effects:
    """Before an answer the caller cancels (the callee declines); after, both end."""

    def work(conn: Connection) -> Effects:
        fx = Effects()
        row = _locked_call(conn, call_id)
        refusal = _participant_check(row, user_id, call_id, callee_only=False)
        if refusal is not None:
            return fx.refuse(refusal)
        call = _view(row)
        if row.status == "ringing" and user_id == row.callee_id:
            _decline(conn, call, now, fx)
        elif row.status == "ringing":
            _finish(conn, call, "cancelled", "caller_hangup", now, fx)
            fx.notices.append(Notice(call.caller, "cancelled", call))
            fx.notices.append(Notice(call.callee, "cancelled", call))
            fx.pushes.append(("cancelled", call))
        elif row.status == "active":
            _end(conn, call, "hangup", now, fx)
        else:
            fx.refuse(
                Refusal(user_id, call_id, "not_live", row.caller_id, row.callee_id, row.media)
            )
        return fx

    return _transaction(engine, work)


def _end(conn: Connection, call: CallView, reason: str, now: datetime, fx: Effects) -> None:
    _finish(conn, call, "ended", reason, now, fx)
    for party in (call.caller, call.callee):
        fx.notices.append(Notice(party, "ended", call, reason=reason))


def expire(engine: Engine, call_id: str, now: datetime) -> Effects:
    """The ring timer: a call still ringing at its deadline is missed."""

    def work(conn: Connection) -> Effects:
        fx = Effects()
        row = _locked_call(conn, call_id)
        if row is not None and row.status == "ringing" and row.ring_deadline <= now:
            _miss(conn, _view(row), now, fx)
        return fx

    return _transaction(engine, work)


def end_if_unjoined(engine: Engine, call_id: str, now: datetime) -> Effects:
    """The join grace: an answered call a party never joined in LiveKit is ended."""

    def work(conn: Connection) -> Effects:
        fx = Effects()
        row = _locked_call(conn, call_id)
        if (
            row is not None
            and row.status == "active"
            and (row.caller_joined_at is None or row.callee_joined_at is None)
        ):
            _end(conn, _view(row), "not_joined", now, fx)
        return fx

    return _transaction(engine, work)


# --- LiveKit: who joined, rooms, recordings ----------------------------------------------


@dataclass(frozen=True, slots=True)
class LiveKitUpdate:
    """What callsig uses of one LiveKit webhook."""

    event_id: str
    event: str
    call_id: str
    identity: str | None = None
    egress_id: str | None = None
    recording: RecordingStatus | None = None
    location: str | None = None


def apply_livekit(engine: Engine, change: LiveKitUpdate, now: datetime) -> Effects:
    """Apply one webhook, once: its id is recorded in the same transaction."""

    def work(conn: Connection) -> Effects:
        fx = Effects()
        if change.event_id:
            seen = conn.execute(select(receipt_t.c.id).where(receipt_t.c.id == change.event_id))
            if seen.first() is not None:
                return fx
            conn.execute(insert(receipt_t).values(id=change.event_id, event=change.event))
        row = _locked_call(conn, change.call_id)
        if row is None:
            return fx
        if change.event == "participant_joined":
            _joined(conn, row, change.identity, now)
        elif change.event in ("participant_left", "participant_connection_aborted"):
            _left(conn, row, change.identity, now, fx)
        elif change.event == "room_finished":
            conn.execute(update(call_t).where(call_t.c.id == row.id).values(room_closed_at=now))
            if row.status == "active":
                _end(conn, _view(row), "room_finished", now, fx)
        elif change.event.startswith("egress_") and change.recording is not None:
            _recording_update(conn, row, change, fx)
        return fx

    return _transaction(engine, work)


def _party_column(row: Any, identity: str | None) -> str | None:
    if identity == row.caller_id:
        return "caller"
    if identity == row.callee_id:
        return "callee"
    return None


def _joined(conn: Connection, row: Any, identity: str | None, now: datetime) -> None:
    party = _party_column(row, identity)
    if party is None:
        return
    joined = row.caller_joined_at if party == "caller" else row.callee_joined_at
    conn.execute(
        update(call_t)
        .where(call_t.c.id == row.id)
        .values({f"{party}_joined_at": joined or now, f"{party}_left_at": None})
    )


def _left(conn: Connection, row: Any, identity: str | None, now: datetime, fx: Effects) -> None:
    party = _party_column(row, identity)
    if party is None:
        return
    conn.execute(update(call_t).where(call_t.c.id == row.id).values({f"{party}_left_at": now}))
    other_left = row.callee_left_at if party == "caller" else row.caller_left_at
    both_joined = row.caller_joined_at is not None and row.callee_joined_at is not None
    if row.status == "active" and both_joined and other_left is not None:
        _end(conn, _view(row), "left", now, fx)


def _recording_update(conn: Connection, row: Any, change: LiveKitUpdate, fx: Effects) -> None:
    if row.egress_id not in (None, change.egress_id):
        return  # an older recording of this call
    conn.execute(
        update(call_t)
        .where(call_t.c.id == row.id)
        .values(
            egress_id=change.egress_id,
            recording_status=change.recording,
            recording_location=change.location or row.recording_location,
        )
    )
    if change.recording != row.recording_status:
        _tell_recording(_view(row), change.recording, fx)


def _tell_recording(call: CallView, status: RecordingStatus | None, fx: Effects) -> None:
    for party in (call.caller, call.callee):
        fx.notices.append(Notice(party, "recording", call, recording=status))


def request_recording(
    engine: Engine, call_id: str, user_id: str, on: bool, enabled: bool
) -> Effects:
    """A party asks to start or stop recording; LiveKit is asked after the commit."""

    def work(conn: Connection) -> Effects:
        fx = Effects()
        row = _locked_call(conn, call_id)
        refusal = _participant_check(row, user_id, call_id, callee_only=False)
        if refusal is not None:
            return fx.refuse(refusal)
        base = Refusal(user_id, call_id, "not_active", row.caller_id, row.callee_id, row.media)
        if not enabled:
            return fx.refuse(_with_reason(base, "recording_unavailable"))
        if row.status != "active":
            return fx.refuse(base)
        # A start that never got LiveKit's answer (callsig died while asking)
        # stays `requested`; asking again is allowed.
        retry = row.recording_status == "requested" and row.egress_id is None
        recording = row.recording_status in RECORDING_LIVE and not retry
        if on and recording:
            return fx.refuse(_with_reason(base, "already_recording"))
        if not on and (not recording or row.egress_id is None):
            return fx.refuse(_with_reason(base, "not_recording"))
        status: RecordingStatus = "requested" if on else "ending"
        values: dict[str, Any] = {"recording_status": status}
        if on:
            values |= {"egress_id": None, "recording_location": None}
            fx.start_recording.append((call_id, row.media == "audio"))
        else:
            fx.stop_recording.append(row.egress_id)
        conn.execute(update(call_t).where(call_t.c.id == call_id).values(values))
        _tell_recording(_view(row), status, fx)
        return fx

    return _transaction(engine, work)


def recording_started(
    engine: Engine, call_id: str, egress_id: str | None, status: RecordingStatus
) -> Effects:
    """LiveKit's answer to a start: the egress id (or `failed`, with no id)."""

    def work(conn: Connection) -> Effects:
        fx = Effects()
        row = _locked_call(conn, call_id)
        if row is None or row.recording_status != "requested":
            return fx  # a webhook got here first, or the call moved on
        conn.execute(
            update(call_t)
            .where(call_t.c.id == call_id)
            .values(egress_id=egress_id, recording_status=status)
        )
        _tell_recording(_view(row), status, fx)
        if row.status != "active" and egress_id is not None:
            fx.stop_recording.append(egress_id)  # the call ended while LiveKit answered
        return fx

    return _transaction(engine, work)


def rooms_to_close(engine: Engine, ended_after: datetime, limit: int = 100) -> list[str]:
    """Ended calls whose LiveKit room is not known to be closed (busy calls
    never had one)."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(call_t.c.id)
            .where(
                call_t.c.status.not_in(("busy", *LIVE)),
                call_t.c.room_closed_at.is_(None),
                call_t.c.ended_at >= ended_after,
            )
            .limit(limit)
        )
        return [r.id for r in rows]


def room_closed(engine: Engine, call_id: str, now: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(update(call_t).where(call_t.c.id == call_id).values(room_closed_at=now))
