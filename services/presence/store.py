"""Presence in the database: each device's last announced state, and what
each user's peers were last told.

A user is online while any of their (not revoked) devices is. `last_seen_at`
moves only when a device's state changes, so the retained messages replayed on
every start of a tracker change nothing that is already known.

Every tracker instance handles every announcement, so both writes here are
compare-and-sets: a device's state changes in exactly one instance's
`apply_device` (`made`), and an announcement to the peers is claimed by exactly
one instance's `claim_announcement`. On PostgreSQL the second of two concurrent
UPDATEs of a row waits for the first to commit, then re-checks its WHERE and
finds nothing to change; on SQLite writers are serialised (`BEGIN IMMEDIATE`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from core.db import reading
from core.models import Device, Member, PresenceAnnouncement

device_t = Device.__table__  # type: ignore[attr-defined]
member_t = Member.__table__  # type: ignore[attr-defined]
announced_t = PresenceAnnouncement.__table__  # type: ignore[attr-defined]

_DEVICE = select(device_t.c.revoked_at).where(
    device_t.c.id == bindparam("device_id"), device_t.c.user_id == bindparam("user_id")
)
# The compare-and-set: only a device whose state differs changes.
_SET = (
    update(device_t)
    .where(device_t.c.id == bindparam("b_id"), device_t.c.online != bindparam("b_online"))
    .values(online=bindparam("b_online"), last_seen_at=bindparam("b_at"))
)
_ANNOUNCED = select(announced_t.c.online).where(announced_t.c.user_id == bindparam("user_id"))
_ANNOUNCE = (
    update(announced_t)
    .where(
        announced_t.c.user_id == bindparam("b_user"),
        announced_t.c.online != bindparam("b_online"),
    )
    .values(online=bindparam("b_online"), announced_at=bindparam("b_at"))
)
_FIRST_ANNOUNCEMENT = insert(announced_t).values(
    user_id=bindparam("b_user"), online=bindparam("b_online"), announced_at=bindparam("b_at")
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


@dataclass(frozen=True, slots=True)
class Recorded:
    """A device announcement, recorded."""

    presence: UserPresence  # the user's, after it
    made: bool  # this call changed the device (exactly one instance's call does)
    announced: bool | None  # what the peers were last told (None: nothing yet)


def apply_device(
    engine: Engine, user_id: str, device_id: str, online: bool, now: datetime
) -> Recorded | None:
    """Record a device's state; None if the device is not one of the user's,
    or is revoked and says online (a revoked device may still go offline: its
    Last Will, when the broker drops it)."""
    with engine.begin() as conn:
        known = conn.execute(_DEVICE, {"device_id": device_id, "user_id": user_id}).first()
        if known is None or (online and known.revoked_at is not None):
            return None
        changed = conn.execute(_SET, {"b_id": device_id, "b_online": online, "b_at": now})
        return Recorded(
            _user_presence(conn, user_id),
            made=changed.rowcount == 1,
            announced=conn.execute(_ANNOUNCED, {"user_id": user_id}).scalar_one_or_none(),
        )


def claim_announcement(
    engine: Engine, user_id: str, online: bool, now: datetime
) -> UserPresence | None:
    """The presence to tell the user's peers if this call is the one that
    records telling them `online`; None if they were told already, or the
    user's presence is no longer `online`."""
    with engine.begin() as conn:
        presence = _user_presence(conn, user_id)
        if presence.online != online:
            return None
        values = {"b_user": user_id, "b_online": online, "b_at": now}
        if conn.execute(_ANNOUNCE, values).rowcount == 1:
            return presence
        if conn.execute(_ANNOUNCED, {"user_id": user_id}).first() is not None:
            return None
        return presence if _first_announcement(conn, values) else None


def _first_announcement(conn: Connection, values: dict[str, object]) -> bool:
    """Insert the user's first announcement; False if another instance did first."""
    try:
        with conn.begin_nested():
            conn.execute(_FIRST_ANNOUNCEMENT, values)
    except IntegrityError:
        return False
    return True


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
