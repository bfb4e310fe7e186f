"""FastAPI dependencies: the app's shared parts, the database session, the caller."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from api.errors import ApiError
from api.media.storage import MediaStorage
from api.security import token_digest
from bridge.mqtt import AsyncMqtt
from bridge.provisioning import Provisioner
from core.config import Settings
from core.models import AccessToken, User
from core.timefmt import utcnow
from services.support_router.notify import Notifier

if TYPE_CHECKING:
    from api.limits import ApiLimits

T = TypeVar("T")


@dataclass
class AppState:
    settings: Settings
    engine: Engine
    mqtt: AsyncMqtt
    provisioner: Provisioner
    storage: MediaStorage
    support: Notifier
    limits: ApiLimits


class ThreadRunner:
    """Runs store functions `func(engine, *args)` in the thread pool (the API's
    database calls are synchronous; the services use core.database.Database)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        return await run_in_threadpool(func, self.engine, *args)


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.chat
    return state


StateDep = Annotated[AppState, Depends(get_state)]

# Routes open their own database session (`with Session(state.engine)`) and
# close it before they return. A session given by a dependency with `yield`
# stays open until the response is sent, and FastAPI serializes a plain `def`
# route's answer on a worker thread: under a burst (thousands of devices
# catching up after a broker restart), every worker thread waited for a pooled
# connection while every connection waited for a worker thread to finish its
# answer, and the API answered nothing but 503 for minutes.


def get_current_user(request: Request, state: StateDep) -> User:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "unauthorized", "missing bearer token")
    # Its own short session: on SQLite every transaction holds the write lock
    # (BEGIN IMMEDIATE), so nothing may stay open across the route's own work.
    # One query for token and user: every authenticated request pays for it.
    with Session(state.engine) as session:
        user = session.exec(
            select(User)
            .join(AccessToken, col(AccessToken.user_id) == col(User.id))
            .where(
                AccessToken.token_hash == token_digest(token.strip()),
                col(AccessToken.expires_at) > utcnow(),
            )
        ).first()
        if user is None:
            raise ApiError(401, "unauthorized", "invalid or expired token")
        return user


CurrentUser = Annotated[User, Depends(get_current_user)]
