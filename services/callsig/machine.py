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
what), and the service publishes them after the commit. LiveKit's side of a
call (who joined, recordings) is in services/callsig/livekit_events.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from bridge.wire.calls import CallEventName, CallMedia, ErrorReason, RecordingStatus
from core.db import reading
from services.callsig import invite_pg, invite_sqlite
from services.callsig import statements as sql

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

    def because(self, reason: ErrorReason) -> Refusal:
        return replace(self, reason=reason)


@dataclass(frozen=True, slots=True)
class LiveCall:
    """One live call of a user, for the retained call state."""

    call: CallView
    status: str
    device_id: str | None


@dataclass
class Effects:
    notices: list[Notice] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    pushes: list[tuple[PushEvent, CallView]] = field(default_factory=list)
    # The new live calls of each user whose retained call state changed. One
    # line per user makes this known without a query: a user's live call is
    # the one that just rang or was answered, or none once it is over.
    states: dict[str, list[LiveCall]] = field(default_factory=dict)
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


def view(row: Any) -> CallView:
    return CallView(
        call_id=row.id,
        caller=Party(row.caller_id, row.caller_name),
        callee=Party(row.callee_id, row.callee_name),
        media=row.media,
    )


def locked_call(conn: Connection, call_id: str) -> Any:
    return conn.execute(sql.CALL_BY_ID_LOCKED, {"call_id": call_id}).one_or_none()


def live_calls(engine: Engine, user_ids: Iterable[str]) -> dict[str, list[LiveCall]]:
    """Each user's live calls (at most one each)."""
    found: dict[str, list[LiveCall]] = {user_id: [] for user_id in user_ids}
    with reading(engine) as conn:
        for row in conn.execute(sql.LINES, {"ids": list(found)}):
            found[row.line_user].append(LiveCall(view(row), row.status, row.answered_device_id))
    return found


def ringing_deadlines(engine: Engine) -> dict[str, datetime]:
    with reading(engine) as conn:
        return {r.id: r.ring_deadline for r in conn.execute(sql.RINGING)}


def unjoined_since(engine: Engine, answered_before: datetime) -> list[str]:
    """Active calls answered before the cutoff that a party has still not joined."""
    with reading(engine) as conn:
        return [r.id for r in conn.execute(sql.UNJOINED, {"before": answered_before})]


# --- shared steps -----------------------------------------------------------------------


def transaction(engine: Engine, work: Callable[[Connection], T]) -> T:
    """Run `work(conn)` in a transaction, again after a constraint conflict
    (another instance committed first; deciding again sees it)."""
    for attempt in range(RETRIES):
        try:
            with engine.begin() as conn:
                return work(conn)
        except IntegrityError:
            if attempt == RETRIES - 1:
                raise
    raise AssertionError("unreachable")


def finish(
    conn: Connection, row: Any, status: str, reason: str | None, now: datetime, fx: Effects
) -> None:
    """Move a call to a final status and free its lines."""
    if row.egress_id and row.recording_status in RECORDING_LIVE:
        fx.stop_recording.append(row.egress_id)
    conn.execute(sql.FINISH, {"b_id": row.id, "b_status": status, "b_reason": reason, "b_at": now})
    conn.execute(sql.DELETE_LINES, {"call_id": row.id})
    fx.ended.append(row.id)
    fx.states[row.caller_id] = []
    fx.states[row.callee_id] = []


def end(conn: Connection, row: Any, reason: str, now: datetime, fx: Effects) -> None:
    """End an answered call for both."""
    finish(conn, row, "ended", reason, now, fx)
    call = view(row)
    for party in (call.caller, call.callee):
        fx.notices.append(Notice(party, "ended", call, reason=reason))


def _miss(conn: Connection, row: Any, now: datetime, fx: Effects) -> None:
    finish(conn, row, "missed", "no_answer", now, fx)
    call = view(row)
    fx.notices.append(Notice(call.caller, "ended", call, reason="no_answer"))
    fx.notices.append(Notice(call.callee, "missed", call))
    fx.pushes.append(("missed", call))


def _decline(conn: Connection, row: Any, now: datetime, fx: Effects) -> None:
    finish(conn, row, "declined", "declined", now, fx)
    call = view(row)
    fx.notices.append(Notice(call.caller, "declined", call))
    # The callee's other devices stop ringing; offline ones clear their notification.
    fx.notices.append(Notice(call.callee, "declined", call))
    fx.pushes.append(("cancelled", call))


def _refusal_about(row: Any, user_id: str, reason: ErrorReason) -> Refusal:
    return Refusal(user_id, row.id, reason, row.caller_id, row.callee_id, row.media)


def participant_check(row: Any, user_id: str, call_id: str, *, callee_only: bool) -> Refusal | None:
    if row is None:
        return Refusal(user_id, call_id, "unknown_call")
    if user_id not in (row.caller_id, row.callee_id):
        # Says nothing about the call to someone who is not in it.
        return Refusal(user_id, call_id, "not_participant")
    if callee_only and user_id != row.callee_id:
        return _refusal_about(row, user_id, "not_callee")
    return None


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
    """The common case in one statement (one short transaction on SQLite),
    anything else by the general transaction."""
    fast = invite_pg if engine.dialect.name == "postgresql" else invite_sqlite
    names = fast.try_ring(engine, request)
    if names is not None:
        return rang(request, *names)
    return invite_in_transaction(engine, request)


def invite_in_transaction(engine: Engine, request: InviteRequest) -> Effects:
    """The invite by the general transaction, which knows every rule."""
    return transaction(engine, lambda conn: _invite(conn, request))


def rang(rq: InviteRequest, caller_name: str, callee_name: str) -> Effects:
    fx = Effects()
    call = CallView(
        rq.call_id, Party(rq.caller_id, caller_name), Party(rq.callee_id, callee_name), rq.media
    )
    _ring(call, fx)
    fx.ringing[rq.call_id] = rq.now + rq.ring_timeout
    return fx


def _invite(conn: Connection, rq: InviteRequest) -> Effects:
    fx = Effects()
    refusal = Refusal(rq.caller_id, rq.call_id, "self_call", rq.caller_id, rq.callee_id, rq.media)
    if rq.callee_id == rq.caller_id:
        return fx.refuse(refusal)
    facts = conn.execute(
        sql.INVITE_FACTS, {"call_id": rq.call_id, "a": rq.caller_id, "b": rq.callee_id}
    ).one()
    if facts.earlier is not None:
        earlier = conn.execute(sql.CALL_BY_ID, {"call_id": rq.call_id}).one()
        return _repeat_invite(earlier, rq, fx, refusal)
    if facts.b_name is None:
        return fx.refuse(refusal.because("unknown_callee"))
    if facts.conv_id is None:
        return fx.refuse(refusal.because("no_shared_conversation"))
    call = CallView(
        rq.call_id, Party(rq.caller_id, facts.a_name), Party(rq.callee_id, facts.b_name), rq.media
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
            return fx.refuse(refusal.because("already_in_call"))
        if rq.call_id > held.id:
            # The other call wins: this one is over before it rang.
            _insert_call(conn, rq, facts.conv_id, "cancelled", end_reason="glare")
            fx.notices.append(Notice(call.caller, "ended", call, reason="glare"))
            return fx
        finish(conn, held, "cancelled", "glare", rq.now, fx)
        other = view(held)
        fx.notices.append(Notice(other.caller, "ended", other, reason="glare"))
        fx.notices.append(Notice(other.callee, "cancelled", other, reason="glare"))
        fx.pushes.append(("cancelled", other))
    elif rq.callee_id in lines:
        _insert_call(conn, rq, facts.conv_id, "busy", end_reason="busy")
        fx.notices.append(Notice(call.caller, "busy", call))
        return fx
    _insert_call(conn, rq, facts.conv_id, "ringing")
    conn.execute(
        sql.INSERT_LINES,
        [{"user_id": u, "call_id": rq.call_id} for u in sorted([rq.caller_id, rq.callee_id])],
    )
    _ring(call, fx)
    fx.ringing[rq.call_id] = rq.now + rq.ring_timeout
    return fx


def _ring(call: CallView, fx: Effects) -> None:
    # The callee first: its phone ringing is what the caller waits for.
    fx.notices.append(Notice(call.callee, "incoming", call, token=True))
    fx.notices.append(Notice(call.caller, "ringing", call, token=True))
    fx.pushes.append(("incoming", call))
    ringing = [LiveCall(call, "ringing", None)]
    fx.states[call.caller.user_id] = fx.states[call.callee.user_id] = ringing


def _repeat_invite(earlier: Any, rq: InviteRequest, fx: Effects, refusal: Refusal) -> Effects:
    """The same invite again (the broker redelivers what was not acknowledged):
    tell its outcome again, since the first telling may never have gone out."""
    same = (earlier.caller_id, earlier.callee_id, earlier.media) == (
        rq.caller_id,
        rq.callee_id,
        rq.media,
    )
    if not same:
        return fx.refuse(refusal.because("call_id_taken"))
    call = view(earlier)
    if earlier.status == "ringing":
        _ring(call, fx)
        fx.ringing[call.call_id] = earlier.ring_deadline
    elif earlier.status == "busy":
        fx.notices.append(Notice(call.caller, "busy", call))
    return fx


def _lines_of(
    conn: Connection, user_ids: Sequence[str], now: datetime, fx: Effects
) -> dict[str, Any]:
    """The live call holding each user's line, locked. A ringing call past its
    deadline (its timer has not fired yet, or its instance died) is ended as
    missed here and frees the line."""
    held: dict[str, Any] = {}
    expired: set[str] = set()
    for row in conn.execute(sql.LINES_LOCKED, {"ids": list(user_ids)}):
        if row.status == "ringing" and row.ring_deadline <= now:
            if row.id not in expired:
                expired.add(row.id)
                _miss(conn, row, now, fx)
            continue
        held[row.line_user] = row
    return held


def _insert_call(
    conn: Connection, rq: InviteRequest, conv_id: str, status: str, end_reason: str | None = None
) -> None:
    conn.execute(
        sql.INSERT_CALL,
        {
            "id": rq.call_id,
            "caller_id": rq.caller_id,
            "callee_id": rq.callee_id,
            "conv_id": conv_id,
            "media": rq.media,
            "status": status,
            "end_reason": end_reason,
            "created_at": rq.now,
            "ring_deadline": rq.now + rq.ring_timeout,
            "ended_at": None if status in LIVE else rq.now,
        },
    )


# --- answer, refuse, end ---------------------------------------------------------------


PartyAct = Callable[[Connection, Any, Effects], None]


def party_action(
    engine: Engine, call_id: str, user_id: str, *, callee_only: bool, act: PartyAct
) -> Effects:
    """A party's action on a call: one transaction that locks the call, refuses
    anyone who is not in it (or not its callee), then runs `act(conn, row, fx)`."""

    def work(conn: Connection) -> Effects:
        fx = Effects()
        row = locked_call(conn, call_id)
        refusal = participant_check(row, user_id, call_id, callee_only=callee_only)
        if refusal is not None:
            return fx.refuse(refusal)
        act(conn, row, fx)
        return fx

    return transaction(engine, work)


def accept(engine: Engine, call_id: str, user_id: str, device_id: str, now: datetime) -> Effects:
    def act(conn: Connection, row: Any, fx: Effects) -> None:
        if row.status == "ringing" and row.ring_deadline <= now:
            _miss(conn, row, now, fx)
        if row.status != "ringing" or row.ring_deadline <= now:
            fx.refuse(_refusal_about(row, user_id, "not_ringing"))
            return
        owned = conn.execute(sql.ACTIVE_DEVICE, {"device_id": device_id, "user_id": user_id})
        if owned.first() is None:
            fx.refuse(_refusal_about(row, user_id, "unknown_device"))
            return
        conn.execute(sql.ANSWER, {"b_id": call_id, "b_at": now, "b_dev": device_id})
        call = view(row)
        for party in (call.caller, call.callee):
            fx.notices.append(Notice(party, "accepted", call, device_id=device_id, token=True))
        active = [LiveCall(call, "active", device_id)]
        fx.states[call.caller.user_id] = fx.states[call.callee.user_id] = active
        fx.answered.append(call_id)

    return party_action(engine, call_id, user_id, callee_only=True, act=act)


def decline(engine: Engine, call_id: str, user_id: str, now: datetime) -> Effects:
    def act(conn: Connection, row: Any, fx: Effects) -> None:
        if row.status != "ringing":
            fx.refuse(_refusal_about(row, user_id, "not_ringing"))
        else:
            _decline(conn, row, now, fx)

    return party_action(engine, call_id, user_id, callee_only=True, act=act)


def hangup(engine: Engine, call_id: str, user_id: str, now: datetime) -> Effects:
    """Before an answer the caller cancels (the callee declines); after, both end."""

    def act(conn: Connection, row: Any, fx: Effects) -> None:
        if row.status == "ringing" and user_id == row.callee_id:
            _decline(conn, row, now, fx)
        elif row.status == "ringing":
            finish(conn, row, "cancelled", "caller_hangup", now, fx)
            call = view(row)
            fx.notices.append(Notice(call.caller, "cancelled", call))
            fx.notices.append(Notice(call.callee, "cancelled", call))
            fx.pushes.append(("cancelled", call))
        elif row.status == "active":
            end(conn, row, "hangup", now, fx)
        else:
            fx.refuse(_refusal_about(row, user_id, "not_live"))

    return party_action(engine, call_id, user_id, callee_only=False, act=act)


def expire(engine: Engine, call_id: str, now: datetime) -> Effects:
    """The ring timer: a call still ringing at its deadline is missed."""

    def work(conn: Connection) -> Effects:
        fx = Effects()
        row = locked_call(conn, call_id)
        if row is not None and row.status == "ringing" and row.ring_deadline <= now:
            _miss(conn, row, now, fx)
        return fx

    return transaction(engine, work)


def end_if_unjoined(engine: Engine, call_id: str, now: datetime) -> Effects:
    """The join grace: an answered call a party never joined in LiveKit is ended."""

    def work(conn: Connection) -> Effects:
        fx = Effects()
        row = locked_call(conn, call_id)
        if (
            row is not None
            and row.status == "active"
            and (row.caller_joined_at is None or row.callee_joined_at is None)
        ):
            end(conn, row, "not_joined", now, fx)
        return fx

    return transaction(engine, work)
