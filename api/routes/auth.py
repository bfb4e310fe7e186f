"""Register and log in: both return an access token."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request, status
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from api.deps import StateDep
from api.errors import ApiError
from api.limits import RegistrationLimit, client_address, limit_login
from api.schemas import LoginIn, RegisterIn, SessionOut
from api.security import hash_password, new_token, token_digest, verify_password
from core.ids import new_id
from core.models import AccessToken, User
from core.timefmt import utcnow

router = APIRouter(prefix="/v1/auth", tags=["auth"])


def _issue_token(session: Session, user_id: str, ttl_days: int) -> str:
    token = new_token()
    session.add(
        AccessToken(
            token_hash=token_digest(token),
            user_id=user_id,
            expires_at=utcnow() + timedelta(days=ttl_days),
        )
    )
    return token


@router.post("/register", status_code=status.HTTP_201_CREATED)
def register(body: RegisterIn, state: StateDep, _limit: RegistrationLimit) -> SessionOut:
    # Hashing is slow on purpose: done before a database connection is taken.
    password_hash = hash_password(body.password)
    with Session(state.engine) as session:
        if session.exec(select(User).where(User.username == body.username)).first():
            raise ApiError(409, "username_taken", "that username is taken")
        user = User(
            id=new_id("u_"),
            username=body.username,
            display_name=body.display_name,
            password_hash=password_hash,
        )
        session.add(user)
        try:
            session.flush()
        except IntegrityError:
            raise ApiError(409, "username_taken", "that username is taken") from None
        token = _issue_token(session, user.id, state.settings.access_token_ttl_days)
        session.commit()
        return SessionOut(user_id=user.id, access_token=token)


@router.post("/login")
def login(body: LoginIn, state: StateDep, request: Request) -> SessionOut:
    limit_login(state, client_address(request), body.username)
    with Session(state.engine) as session:
        user = session.exec(select(User).where(User.username == body.username)).first()
        user_id, password_hash = (user.id, user.password_hash) if user else (None, None)
    # Checked with no database connection held: verifying is slow on purpose.
    if not verify_password(password_hash, body.password) or user_id is None:
        raise ApiError(401, "invalid_credentials", "wrong username or password")
    with Session(state.engine) as session:
        token = _issue_token(session, user_id, state.settings.access_token_ttl_days)
        session.commit()
    return SessionOut(user_id=user_id, access_token=token)
