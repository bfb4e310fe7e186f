"""Presence in the database: each device's last announced state.

A user is online while any of their (not revoked) devices is. `last_seen_at`
moves only when a device's state changes, so the retained messages replayed on
every start of the tracker change nothing that is already known.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, bindparam, func, select, update
from sqlalchemy.orm import aliased

from core.db import reading
from core.models import Device, Member

device_t = Device.__table__  # type: ignore[attr-defined]
member_t = Member.__table__  # type: ignore[attr-defined]

_DEVICE = select(device_t.c.online, device_t.c.revoked_at).where(
    device_t.c.id == bindparam("device_id"), device_t.c.user_id == bindparam("user_id")
)
_SET = (
    update(device_t)
    .where(device_t.c.id == bindparam("b_id"))
    .values(online=bindparam("b_online"), last_seen_at=bindparam("b_at"))
)
_USER = select(
    func.count().filter(device_t.c.online.is_(True)).label("online_devices"),
    func.max(device_t.c.last_seen_at).label("last_seen"),
).where(device_t.c.user_id == bindparam("user_id"), device_t.c.revoked_at.is_(None))
_mine = aliased(member_t)
_theirs = aliased(member_t)
_PEERS = (
    select(_theirs.c.user_id)
    .distinct()
    .join(_mine, _mine.c.conv_id == _theirs.c.conv_id)
    .where(_mine.c.user_id == bindparam("user_id"), _theirs.c.user_id != bindparam("user_id"))
)
_SHARE = (
    select(_mine.c.conv_id)
    .join(_theirs, _theirs.c.conv_id == _mine.c.conv_id)
    .where(_mine.c.user_id == bindparam("a"), _theirs.c.user_id == bindparam("b"))
    .limit(1)
)


@dataclass(frozen=True, slots=True)
class UserPresence:
    user_id: str
    online: bool
    last_seen: datetime | None


def _user_presence(conn: Any, user_id: str) -> UserPresence:
    row = conn.execute(_USER, {"user_id": user_id}).one()
    online = bool(row.online_devices)
    return UserPresence(user_id, online, None if online else row.last_seen)


def apply_device(
    engine: Engine, user_id: str, device_id: str, online: bool, now: datetime
) -> UserPresence | None:
    """Record a device's state; the user's presence when the device changed,
    None when nothing changed (or the device is not one of the user's). A
    revoked device may still go offline (its Last Will, when the broker drops
    it), never online."""
    with engine.begin() as conn:
        known = conn.execute(_DEVICE, {"device_id": device_id, "user_id": user_id}).first()
        if known is None or known.online == online:
            return None
        if online and known.revoked_at is not None:
            return None
        conn.execute(_SET, {"b_id": device_id, "b_online": online, "b_at": now})
        return _user_presence(conn, user_id)


def presence_of(engine: Engine, user_id: str) -> UserPresence:
    with reading(engine) as conn:
        return _user_presence(conn, user_id)


def peers_of(engine: Engine, user_id: str) -> list[str]:
    """Everyone who shares a conversation with the user."""
    with reading(engine) as conn:
        return [row.user_id for row in conn.execute(_PEERS, {"user_id": user_id})]


def share_a_conversation(engine: Engine, a: str, b: str) -> bool:
    with reading(engine) as conn:
        return conn.execute(_SHARE, {"a": a, "b": b}).first() is not None
