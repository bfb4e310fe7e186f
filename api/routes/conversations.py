"""Conversations: open (direct or group), list with last message and unread count."""

from __future__ import annotations

import sqlmodel
from fastapi import APIRouter, Response, status
from sqlalchemy import and_, func, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from api.deps import CurrentUser, StateDep
from api.errors import ApiError
from api.schemas import (
    ConversationIn,
    ConversationList,
    ConversationOut,
    ConversationSummary,
    MuteIn,
    MuteOut,
)
from core.ids import new_id
from core.models import Conversation, Member, User
from core.timefmt import to_wire
from services.persistence.store import load_messages, member_t, members_of, message_t

router = APIRouter(prefix="/v1/conversations", tags=["conversations"])


def direct_key(a: str, b: str) -> str:
    return "|".join(sorted((a, b)))


def conversation_out(conv: Conversation, member_ids: list[str]) -> ConversationOut:
    return ConversationOut(
        conv_id=conv.id,
        kind=conv.kind,
        member_ids=sorted(member_ids),
        title=conv.title,
        created_at=to_wire(conv.created_at),
    )


def _members(session: Session, conv_id: str) -> list[str]:
    return members_of(session.connection(), [conv_id]).get(conv_id, [])


@router.post("", status_code=status.HTTP_201_CREATED)
def create_conversation(
    body: ConversationIn, user: CurrentUser, state: StateDep, response: Response
) -> ConversationOut:
    with Session(state.engine) as session:
        others = sorted(set(body.member_ids) - {user.id})
        if not others:
            raise ApiError(422, "invalid_payload", "member_ids must name someone other than you")
        user_t = User.__table__  # type: ignore[attr-defined]
        found = (
            session.connection()
            .execute(select(user_t.c.id).where(user_t.c.id.in_(others)))
            .scalars()
            .all()
        )
        missing = sorted(set(others) - set(found))
        if missing:
            raise ApiError(404, "unknown_user", f"no such user: {missing[0]}")
        if len(others) == 1:
            key = direct_key(user.id, others[0])
            existing = _direct(session, key)
            if existing is not None:
                response.status_code = status.HTTP_200_OK
                return conversation_out(existing, _members(session, existing.id))
            conv = Conversation(id=new_id("c_"), kind="direct", title=body.title, direct_key=key)
        else:
            conv = Conversation(id=new_id("c_"), kind="group", title=body.title)
        session.add(conv)
        member_ids = [user.id, *others]
        for member in member_ids:
            session.add(Member(conv_id=conv.id, user_id=member))
        try:
            session.commit()
        except IntegrityError:
            # Both sides of a pair asked at once: the other request created it.
            session.rollback()
            existing = _direct(session, conv.direct_key or "")
            if existing is None:
                raise
            response.status_code = status.HTTP_200_OK
            return conversation_out(existing, _members(session, existing.id))
        return conversation_out(conv, member_ids)


def _direct(session: Session, key: str) -> Conversation | None:
    return session.exec(sqlmodel.select(Conversation).where(Conversation.direct_key == key)).first()


@router.get("")
def list_conversations(user: CurrentUser, state: StateDep) -> ConversationList:
    with Session(state.engine) as session:
        conn = session.connection()
        conv_t = Conversation.__table__  # type: ignore[attr-defined]
        rows = conn.execute(
            select(conv_t, member_t.c.last_read_seq)
            .join(member_t, member_t.c.conv_id == conv_t.c.id)
            .where(member_t.c.user_id == user.id)
            .order_by(conv_t.c.last_message_at.desc().nulls_last(), conv_t.c.created_at.desc())
        ).all()
        conv_ids = [row.id for row in rows]
        members = members_of(conn, conv_ids)
        last_messages = (
            {
                m.conv_id: m
                for m in load_messages(
                    conn,
                    tuple_(message_t.c.conv_id, message_t.c.seq).in_(
                        [(row.id, row.last_seq) for row in rows if row.last_seq > 0]
                    ),
                )
            }
            if conv_ids
            else {}
        )
        unread: dict[str, int] = dict(
            conn.execute(
                select(message_t.c.conv_id, func.count())
                .join(
                    member_t,
                    and_(member_t.c.conv_id == message_t.c.conv_id, member_t.c.user_id == user.id),
                )
                .where(message_t.c.seq > member_t.c.last_read_seq, message_t.c.sender_id != user.id)
                .group_by(message_t.c.conv_id)
            )
            .tuples()
            .all()
        )
        return ConversationList(
            conversations=[
                ConversationSummary(
                    conv_id=row.id,
                    kind=row.kind,
                    member_ids=sorted(members.get(row.id, [])),
                    title=row.title,
                    last_message=last_messages.get(row.id),
                    unread_count=unread.get(row.id, 0),
                    last_seq=row.last_seq,
                    read_seq=row.last_read_seq,
                )
                for row in rows
            ]
        )


@router.put("/{conv_id}/mute")
def mute_conversation(conv_id: str, body: MuteIn, user: CurrentUser, state: StateDep) -> MuteOut:
    """Mute (or unmute) a conversation: no push notifications for it."""
    with Session(state.engine) as session:
        member = session.get(Member, (conv_id, user.id))
        if member is None:
            if session.get(Conversation, conv_id) is None:
                raise ApiError.rejection("unknown_conversation", "no such conversation")
            raise ApiError.rejection("not_member", "you are not a member of this conversation")
        member.muted = body.muted
        session.add(member)
        session.commit()
        return MuteOut(conv_id=conv_id, muted=body.muted)
