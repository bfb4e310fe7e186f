"""What push needs from the database: who is offline, their tokens, dead tokens."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Engine, bindparam, select, update

from core.db import reading
from core.models import Device, Member, User

device_t = Device.__table__  # type: ignore[attr-defined]
member_t = Member.__table__  # type: ignore[attr-defined]
user_t = User.__table__  # type: ignore[attr-defined]

_DEVICES = select(device_t.c.online, device_t.c.push_token).where(
    device_t.c.user_id == bindparam("user_id"), device_t.c.revoked_at.is_(None)
)
_DROP = (
    update(device_t)
    .where(device_t.c.push_token.in_(bindparam("tokens", expanding=True)))
    .values(push_token=None)
)


def offline_tokens(engine: Engine, user_id: str) -> list[str]:
    """The user's push tokens, or none at all while any device is online (an
    online user sees the event in the app; a push would only echo it)."""
    with reading(engine) as conn:
        rows = conn.execute(_DEVICES, {"user_id": user_id}).all()
    if any(row.online for row in rows):
        return []
    return [row.push_token for row in rows if row.push_token]


def drop_tokens(engine: Engine, tokens: Sequence[str]) -> None:
    if tokens:
        with engine.begin() as conn:
            conn.execute(_DROP, {"tokens": list(tokens)})


_RECIPIENTS = (
    select(device_t.c.user_id, device_t.c.online, device_t.c.push_token)
    .join(
        member_t,
        (member_t.c.user_id == device_t.c.user_id) & (member_t.c.conv_id == bindparam("conv_id")),
    )
    .where(
        device_t.c.user_id.in_(bindparam("ids", expanding=True)),
        device_t.c.revoked_at.is_(None),
        member_t.c.muted.is_(False),
    )
)
_NAMES = select(user_t.c.id, user_t.c.display_name).where(
    user_t.c.id.in_(bindparam("ids", expanding=True))
)


def offline_recipients(
    engine: Engine, conv_id: str, user_ids: Sequence[str]
) -> dict[str, list[str]]:
    """Of these members, those with no device online who have not muted the
    conversation and have a push token: {user id: tokens}."""
    online: set[str] = set()
    tokens: dict[str, list[str]] = {}
    with reading(engine) as conn:
        for row in conn.execute(_RECIPIENTS, {"conv_id": conv_id, "ids": list(user_ids)}):
            if row.online:
                online.add(row.user_id)
            elif row.push_token:
                tokens.setdefault(row.user_id, []).append(row.push_token)
    return {user: found for user, found in tokens.items() if user not in online}


def display_names(engine: Engine, user_ids: set[str]) -> dict[str, str]:
    with reading(engine) as conn:
        return {row.id: row.display_name for row in conn.execute(_NAMES, {"ids": list(user_ids)})}
