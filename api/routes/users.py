"""Other users as the caller may see them: presence, for conversation peers only."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from api.deps import CurrentUser, StateDep
from api.errors import ApiError
from api.schemas import PresenceOut
from core.timefmt import to_wire
from services.presence import store

router = APIRouter(prefix="/v1/users", tags=["presence"])


@router.get("/{user_id}/presence")
async def user_presence(user_id: str, user: CurrentUser, state: StateDep) -> PresenceOut:
    """Online now, or when last seen. Only for yourself and for users you share a
    conversation with; anyone else is a 404, the same as an unknown user."""
    engine = state.engine
    if user_id != user.id and not await run_in_threadpool(
        store.share_a_conversation, engine, user.id, user_id
    ):
        raise ApiError(404, "not_found", "no such user among your conversations")
    presence = await run_in_threadpool(store.presence_of, engine, user_id)
    return PresenceOut(
        user_id=user_id,
        online=presence.online,
        last_seen=to_wire(presence.last_seen) if presence.last_seen else None,
    )
