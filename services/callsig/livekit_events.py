"""LiveKit's side of a call, as state transitions: who actually joined the
room, rooms that finished, and recordings. Like services/callsig/machine.py,
each function is one transaction returning `Effects`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, select, update

from bridge.wire.calls import RecordingStatus
from core.db import reading
from services.callsig import statements as sql
from services.callsig.machine import (
    RECORDING_LIVE,
    Effects,
    Notice,
    Refusal,
    end,
    locked_call,
    party_action,
    transaction,
    view,
)

call_t = sql.call_t


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
            if conn.execute(sql.RECEIPT, {"event_id": change.event_id}).first() is not None:
                return fx
            conn.execute(sql.INSERT_RECEIPT, {"id": change.event_id, "event": change.event})
        row = locked_call(conn, change.call_id)
        if row is None:
            return fx
        if change.event == "participant_joined":
            _joined(conn, row, change.identity, now)
        elif change.event in ("participant_left", "participant_connection_aborted"):
            _left(conn, row, change.identity, now, fx)
        elif change.event == "room_finished":
            conn.execute(update(call_t).where(call_t.c.id == row.id).values(room_closed_at=now))
            if row.status == "active":
                end(conn, row, "room_finished", now, fx)
        elif change.event.startswith("egress_") and change.recording is not None:
            _recording_update(conn, row, change, fx)
        return fx

    return transaction(engine, work)


def _party(row: Any, identity: str | None) -> str | None:
    """`caller` or `callee` for a LiveKit identity (our user id), else None."""
    if identity == row.caller_id:
        return "caller"
    if identity == row.callee_id:
        return "callee"
    return None


def _joined(conn: Connection, row: Any, identity: str | None, now: datetime) -> None:
    party = _party(row, identity)
    if party is None:
        return
    first_join = row.caller_joined_at if party == "caller" else row.callee_joined_at
    conn.execute(
        update(call_t)
        .where(call_t.c.id == row.id)
        .values({f"{party}_joined_at": first_join or now, f"{party}_left_at": None})
    )


def _left(conn: Connection, row: Any, identity: str | None, now: datetime, fx: Effects) -> None:
    party = _party(row, identity)
    if party is None:
        return
    conn.execute(update(call_t).where(call_t.c.id == row.id).values({f"{party}_left_at": now}))
    other_left = row.callee_left_at if party == "caller" else row.caller_left_at
    both_joined = row.caller_joined_at is not None and row.callee_joined_at is not None
    if row.status == "active" and both_joined and other_left is not None:
        end(conn, row, "left", now, fx)


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
        _tell_recording(row, change.recording, fx)


def _tell_recording(row: Any, status: RecordingStatus | None, fx: Effects) -> None:
    call = view(row)
    for party in (call.caller, call.callee):
        fx.notices.append(Notice(party, "recording", call, recording=status))


def request_recording(
    engine: Engine, call_id: str, user_id: str, on: bool, enabled: bool
) -> Effects:
    """A party asks to start or stop recording; LiveKit is asked after the commit."""

    def act(conn: Connection, row: Any, fx: Effects) -> None:
        base = Refusal(user_id, call_id, "not_active", row.caller_id, row.callee_id, row.media)
        if not enabled:
            fx.refuse(base.because("recording_unavailable"))
            return
        if row.status != "active":
            fx.refuse(base)
            return
        # A start that never got LiveKit's answer (callsig died while asking)
        # stays `requested`; asking again is allowed.
        retry = row.recording_status == "requested" and row.egress_id is None
        recording = row.recording_status in RECORDING_LIVE and not retry
        if on and recording:
            fx.refuse(base.because("already_recording"))
            return
        if not on and (not recording or row.egress_id is None):
            fx.refuse(base.because("not_recording"))
            return
        status: RecordingStatus = "requested" if on else "ending"
        values: dict[str, Any] = {"recording_status": status}
        if on:
            values |= {"egress_id": None, "recording_location": None}
            fx.start_recording.append((call_id, row.media == "audio"))
        else:
            fx.stop_recording.append(row.egress_id)
        conn.execute(update(call_t).where(call_t.c.id == call_id).values(values))
        _tell_recording(row, status, fx)

    return party_action(engine, call_id, user_id, callee_only=False, act=act)


def recording_started(
    engine: Engine, call_id: str, egress_id: str | None, status: RecordingStatus
) -> Effects:
    """LiveKit's answer to a start: the egress id (or `failed`, with no id)."""

    def work(conn: Connection) -> Effects:
        fx = Effects()
        row = locked_call(conn, call_id)
        if row is None or row.recording_status != "requested":
            return fx  # a webhook got here first, or the call moved on
        conn.execute(
            update(call_t)
            .where(call_t.c.id == call_id)
            .values(egress_id=egress_id, recording_status=status)
        )
        _tell_recording(row, status, fx)
        if row.status != "active" and egress_id is not None:
            fx.stop_recording.append(egress_id)  # the call ended while LiveKit answered
        return fx

    return transaction(engine, work)


def rooms_to_close(engine: Engine, ended_after: datetime, limit: int = 100) -> list[str]:
    """Ended calls whose LiveKit room is not known to be closed (busy calls
    never had one)."""
    with reading(engine) as conn:
        rows = conn.execute(
            select(call_t.c.id)
            .where(
                call_t.c.status.not_in(("busy", "ringing", "active")),
                call_t.c.room_closed_at.is_(None),
                call_t.c.ended_at >= ended_after,
            )
            .limit(limit)
        )
        return [r.id for r in rows]


def room_closed(engine: Engine, call_id: str, now: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(update(call_t).where(call_t.c.id == call_id).values(room_closed_at=now))
