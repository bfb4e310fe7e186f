"""Creating operators: shared by the admin command (tools/admin.py) and the
supervisors' API. An operator is a user with the `operator` (or `supervisor`)
role and an `operator` row; devices registered afterwards carry the broker
role that lets them read the operators' topics."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from api.errors import ApiError
from api.security import hash_password
from core.ids import new_id
from core.models import User
from core.timefmt import utcnow
from services.support_router.store import ensure_operator


def create_operator(
    engine: Engine,
    *,
    username: str,
    password: str,
    display_name: str,
    capacity: int,
    supervisor: bool = False,
) -> str:
    """A new user with the operator role; its id. 409 if the username is taken."""
    with Session(engine) as session:
        if session.exec(select(User).where(User.username == username)).first():
            raise ApiError(409, "username_taken", "that username is taken")
        user = User(
            id=new_id("u_"),
            username=username,
            display_name=display_name,
            password_hash=hash_password(password),
            role="supervisor" if supervisor else "operator",
        )
        session.add(user)
        try:
            session.flush()
        except IntegrityError:
            raise ApiError(409, "username_taken", "that username is taken") from None
        ensure_operator(session.connection(), user.id, capacity, utcnow())
        session.commit()
        user_id: str = user.id
        return user_id


def promote(engine: Engine, username: str, capacity: int, *, supervisor: bool = False) -> str:
    """Make an existing user an operator; its id. Devices it registers from now
    on can read the operators' topics (log in again on the dashboard)."""
    with Session(engine) as session:
        user = session.exec(select(User).where(User.username == username)).first()
        if user is None:
            raise ApiError(404, "not_found", "no such user")
        user.role = "supervisor" if supervisor else "operator"
        session.add(user)
        session.flush()
        ensure_operator(session.connection(), user.id, capacity, utcnow())
        session.commit()
        return user.id
