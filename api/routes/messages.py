"""History, the HTTP send (same pipeline as MQTT), and catch-up in one round trip."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Connection, and_, select
from sqlmodel import Session

from api.deps import AppState, CurrentUser, StateDep
from api.errors import ApiError
from api.schemas import MessageList, SyncConversation, SyncIn, SyncOut
from bridge.wire.messaging import SendMessage, StoredMessage
from core.models import Conversation
from services.persistence import store
from services.persistence.delivery import count_outcome, deliver_after_commit, to_deliver
from services.persistence.store import Duplicate, Rejected, SendItem, member_t, message_t

router = APIRouter(prefix="/v1", tags=["messages"])
conversation_t = Conversation.__table__  # type: ignore[attr-defined]


def require_member(conn: Connection, conv_id: str, user_id: str) -> Any:
    """The caller's member row joined with the conversation, or the contract's error."""
    row = conn.execute(
        select(
            conversation_t.c.id,
            conversation_t.c.last_seq,
            member_t.c.user_id,
            member_t.c.last_read_seq,
        )
        .outerjoin(
            member_t, and_(member_t.c.conv_id == conversation_t.c.id, member_t.c.user_id == user_id)
        )
        .where(conversation_t.c.id == conv_id)
    ).first()
    if row is None:
        raise ApiError.rejection("unknown_conversation", "no such conversation")
    if row.user_id is None:
        raise ApiError.rejection("not_member", "you are not a member of this conversation")
    return row


@router.get("/conversations/{conv_id}/messages")
def history(
    conv_id: str,
    user: CurrentUser,
    state: StateDep,
    after_seq: Annotated[int | None, Query(ge=0)] = None,
    before_seq: Annotated[int | None, Query(ge=1)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> MessageList:
    """Ascending by seq. With `before_seq`: the `limit` just before it; with only
    `after_seq`: the `limit` just after it; with neither: the newest `limit`."""
    with Session(state.engine) as session:
        conn = session.connection()
        require_member(conn, conv_id, user.id)
        where = [message_t.c.conv_id == conv_id]
        if after_seq is not None:
            where.append(message_t.c.seq > after_seq)
        if before_seq is not None:
            where.append(message_t.c.seq < before_seq)
        newest_first = before_seq is not None or after_seq is None
        messages = store.load_messages(conn, and_(*where), order_desc=newest_first, limit=limit)
        if newest_first:
            messages.reverse()
        return MessageList(messages=messages)


@router.post("/conversations/{conv_id}/messages", status_code=status.HTTP_201_CREATED)
async def send(
    conv_id: str, body: SendMessage, user: CurrentUser, state: StateDep, response: Response
) -> StoredMessage:
    message, duplicate = await send_over_http(state, conv_id, user.id, body)
    if duplicate:
        response.status_code = status.HTTP_200_OK
    return message


async def send_over_http(
    state: AppState, conv_id: str, sender_id: str, body: SendMessage
) -> tuple[StoredMessage, bool]:
    """Store and deliver one message like the MQTT path; (message, was a duplicate)."""
    over_limit = not state.limits.messages.hit(sender_id).allowed
    (outcome,) = await run_in_threadpool(
        store.store_batch, state.engine, [SendItem(conv_id, sender_id, body, over_limit)]
    )
    count_outcome(outcome)
    if isinstance(outcome, Rejected):
        raise ApiError.rejection(outcome.code, outcome.message)
    duplicate = isinstance(outcome, Duplicate)
    pending = to_deliver(outcome)
    if pending is None:
        return outcome.message, duplicate
    # Committed: deliver like the MQTT path. If the broker is down, the message
    # stays undelivered in the outbox and the persistence service sends it later.
    try:
        await asyncio.wait_for(asyncio.gather(*deliver_after_commit(state.mqtt, *pending)), 5)
    except TimeoutError:
        return outcome.message, duplicate
    await run_in_threadpool(store.mark_delivered, state.engine, [outcome.message.id])
    return outcome.message, duplicate


@router.post("/sync")
def sync(body: SyncIn, user: CurrentUser, state: StateDep) -> SyncOut:
    """Everything the caller missed, for all their conversations, in one answer.

    `known` maps conversation id to the last seq the client has; conversations
    it does not list count as 0. Only conversations with something new come back,
    each with up to `limit` messages after the known seq (`has_more` if cut).
    """
    with Session(state.engine) as session:
        conn = session.connection()
        rows = conn.execute(
            select(conversation_t, member_t.c.last_read_seq)
            .join(member_t, member_t.c.conv_id == conversation_t.c.id)
            .where(member_t.c.user_id == user.id)
        ).all()
        behind = [row for row in rows if row.last_seq > body.known.get(row.id, 0)]
        members = store.members_of(conn, [row.id for row in behind])
        result = []
        for row in behind:
            since = body.known.get(row.id, 0)
            messages = store.load_messages(
                conn,
                and_(message_t.c.conv_id == row.id, message_t.c.seq > since),
                limit=body.limit,
            )
            result.append(
                SyncConversation(
                    conv_id=row.id,
                    kind=row.kind,
                    member_ids=sorted(members.get(row.id, [])),
                    title=row.title,
                    last_seq=row.last_seq,
                    read_seq=row.last_read_seq,
                    messages=messages,
                    has_more=row.last_seq - since > len(messages),
                )
            )
        return SyncOut(conversations=result)
