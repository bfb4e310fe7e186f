"""What push needs from the database: who is offline, their tokens, dead tokens."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Engine, bindparam, select, update

from core.db import reading
from core.models import Device

device_t = Device.__table__  # type: ignore[attr-defined]

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
