"""FastAPI dependencies: the app's shared parts, the database session, the caller."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlmodel import Session

from api.errors import ApiError
from api.media.storage import MediaStorage
from api.security import token_digest
from bridge.mqtt import AsyncMqtt
from bridge.provisioning import Provisioner
from core.config import Settings
from core.models import AccessToken, User
from core.timefmt import utcnow


@dataclass
class AppState:
    settings: Settings
    engine: Engine
    mqtt: AsyncMqtt
    provisioner: Provisioner
    storage: MediaStorage


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.chat
    return state


StateDep = Annotated[AppState, Depends(get_state)]


def get_session(state: StateDep) -> Iterator[Session]:
    with Session(state.engine) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def get_current_user(request: Request, state: StateDep) -> User:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "unauthorized", "missing bearer token")
    # Its own short session: on SQLite every transaction holds the write lock
    # (BEGIN IMMEDIATE), so nothing may stay open across the route's own work.
    with Session(state.engine) as session:
        found = session.get(AccessToken, token_digest(token.strip()))
        if found is None or found.expires_at < utcnow():
            raise ApiError(401, "unauthorized", "invalid or expired token")
        user = session.get(User, found.user_id)
        if user is None:
            raise ApiError(401, "unauthorized", "invalid token")
        return user


CurrentUser = Annotated[User, Depends(get_current_user)]
