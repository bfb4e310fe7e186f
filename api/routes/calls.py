"""Call history: my calls newest first, and the missed-call badge.

Calls themselves are made over MQTT (services/callsig); this is the record.
"A missed call" for the badge is an incoming call that was never answered:
the ring timed out, or the caller hung up while it rang (glare excepted, since
that call turned into the other one).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlmodel import Session

from api.deps import CurrentUser, StateDep
from api.errors import ApiError
from api.schemas import CallList, CallOut, CallRecordingOut, CallsSeenIn, MissedCount
from core.models import Call
from core.timefmt import to_wire, utcnow

router = APIRouter(prefix="/v1/calls", tags=["calls"])

call_t = Call.__table__  # type: ignore[attr-defined]


def _missed_for(user_id: str) -> ColumnElement[bool]:
    return and_(
        call_t.c.callee_id == user_id,
        or_(
            call_t.c.status == "missed",
            and_(call_t.c.status == "cancelled", call_t.c.end_reason != "glare"),
        ),
    )


def _call_out(row: Any, user_id: str) -> CallOut:
    outgoing = row.caller_id == user_id
    duration = (
        (row.ended_at - row.answered_at).total_seconds()
        if row.answered_at is not None and row.ended_at is not None
        else None
    )
    return CallOut(
        call_id=row.id,
        direction="outgoing" if outgoing else "incoming",
        peer_id=row.callee_id if outgoing else row.caller_id,
        conv_id=row.conv_id,
        media=row.media,
        status=row.status,
        end_reason=row.end_reason,
        started_at=to_wire(row.created_at),
        answered_at=to_wire(row.answered_at) if row.answered_at else None,
        ended_at=to_wire(row.ended_at) if row.ended_at else None,
        duration_s=round(duration, 3) if duration is not None else None,
        seen=row.seen_at is not None,
        recording=(
            CallRecordingOut(status=row.recording_status, location=row.recording_location)
            if row.recording_status
            else None
        ),
    )


def _missed_unseen(session: Session, user_id: str) -> int:
    query = select(func.count()).where(_missed_for(user_id), call_t.c.seen_at.is_(None))
    return int(session.connection().execute(query).scalar_one())


@router.get("")
def list_calls(
    user: CurrentUser,
    state: StateDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before: Annotated[str | None, Query(description="a call id: calls older than it")] = None,
) -> CallList:
    with Session(state.engine) as session:
        conn = session.connection()
        mine = or_(call_t.c.caller_id == user.id, call_t.c.callee_id == user.id)
        query = select(call_t).where(mine)
        if before is not None:
            cursor = conn.execute(
                select(call_t.c.created_at, call_t.c.id).where(call_t.c.id == before, mine)
            ).one_or_none()
            if cursor is None:
                raise ApiError(404, "unknown_call", f"no call {before} of yours")
            query = query.where(
                or_(
                    call_t.c.created_at < cursor.created_at,
                    and_(call_t.c.created_at == cursor.created_at, call_t.c.id < cursor.id),
                )
            )
        rows = conn.execute(
            query.order_by(call_t.c.created_at.desc(), call_t.c.id.desc()).limit(limit)
        ).all()
        return CallList(
            calls=[_call_out(row, user.id) for row in rows],
            missed_unseen=_missed_unseen(session, user.id),
        )


@router.post("/seen")
def mark_seen(body: CallsSeenIn, user: CurrentUser, state: StateDep) -> MissedCount:
    """Mark missed calls seen (the listed ones, or all); returns the new badge count."""
    with Session(state.engine) as session:
        where = [_missed_for(user.id), call_t.c.seen_at.is_(None)]
        if body.call_ids is not None:
            where.append(call_t.c.id.in_(body.call_ids))
        session.connection().execute(update(call_t).where(*where).values(seen_at=utcnow()))
        session.commit()
        return MissedCount(missed_unseen=_missed_unseen(session, user.id))
