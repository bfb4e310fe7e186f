"""Collapse windows of message pushes in the database, shared by every push
instance (services/push/collapse.py keeps their timers).

A window is a row per (user, conversation). A message for a user with no
window opens one; a message for a user with an open window is counted into it,
whichever instance receives it. A window leaves the table in the statement that
reads it (DELETE ... RETURNING), so of the instances that try to close it,
exactly one gets it and sends its push; a message arriving after that opens a
new window.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, case, delete, select, update

from bridge.wire.messaging import StoredMessage
from core.db import reading
from core.models import PushWindow
from services.push.upsert import insert_new


@dataclass(frozen=True, slots=True)
class Due:
    """A closed window: `count` messages for `user_id`, the newest `last`."""

    user_id: str
    count: int
    last: StoredMessage


window_t = PushWindow.__table__  # type: ignore[attr-defined]

_COUNT_IN = (
    update(window_t)
    .where(
        window_t.c.conv_id == bindparam("b_conv"),
        window_t.c.user_id.in_(bindparam("b_users", expanding=True)),
    )
    .values(
        count=window_t.c.count + 1,
        # The push shows the newest message, whatever order they arrive in.
        last_message=case(
            (bindparam("b_seq") > window_t.c.last_seq, bindparam("b_message")),
            else_=window_t.c.last_message,
        ),
        last_seq=case(
            (bindparam("b_seq") > window_t.c.last_seq, bindparam("b_seq")),
            else_=window_t.c.last_seq,
        ),
    )
    .returning(window_t.c.user_id)
)
_RETURNED = (window_t.c.user_id, window_t.c.count, window_t.c.last_message)
_TAKE = (
    delete(window_t)
    .where(window_t.c.user_id == bindparam("user_id"), window_t.c.conv_id == bindparam("conv_id"))
    .returning(*_RETURNED)
)
_ANY_OVERDUE = select(window_t.c.user_id).where(window_t.c.due_at <= bindparam("before")).limit(1)
_TAKE_OVERDUE = (
    delete(window_t).where(window_t.c.due_at <= bindparam("before")).returning(*_RETURNED)
)


def count_in(
    engine: Engine, message: StoredMessage, user_ids: Sequence[str], due: datetime
) -> list[str]:
    """Count the message into each user's window for its conversation; the
    users whose window this call opened (it closes at `due`). Three statements
    for any number of users."""
    values: dict[str, Any] = {
        "b_conv": message.conv_id,
        "b_seq": message.seq,
        "b_message": message.model_dump_json(),
    }
    with engine.begin() as conn:
        rest = set(user_ids) - _count_in(conn, set(user_ids), values)
        if not rest:
            return []
        rows = [
            {
                "user_id": user_id,
                "conv_id": message.conv_id,
                "count": 1,
                "last_seq": message.seq,
                "last_message": values["b_message"],
                "due_at": due,
            }
            for user_id in sorted(rest)
        ]
        opening = insert_new(conn, window_t).returning(window_t.c.user_id)
        opened = {row.user_id for row in conn.execute(opening, rows)}
        # Windows another instance opened meanwhile: count into theirs.
        if rest - opened:
            _count_in(conn, rest - opened, values)
    return sorted(opened)


def _count_in(conn: Connection, user_ids: set[str], values: dict[str, Any]) -> set[str]:
    rows = conn.execute(_COUNT_IN, {**values, "b_users": sorted(user_ids)})
    return {row.user_id for row in rows}


def take(engine: Engine, keys: Iterable[tuple[str, str]]) -> list[Due]:
    """Close these windows (user, conversation): the ones no one closed before."""
    with engine.begin() as conn:
        rows = [
            row
            for user_id, conv_id in keys
            for row in conn.execute(_TAKE, {"user_id": user_id, "conv_id": conv_id})
        ]
    return [_due(row) for row in rows]


def take_overdue(engine: Engine, before: datetime) -> list[Due]:
    """Close every window that was due before `before` (its opener is gone).
    Looked for first with a plain read: the sweep runs every second on every
    instance and nearly always finds nothing, so it takes no write lock then."""
    with reading(engine) as conn:
        if conn.execute(_ANY_OVERDUE, {"before": before}).first() is None:
            return []
    with engine.begin() as conn:
        rows = conn.execute(_TAKE_OVERDUE, {"before": before}).all()
    return [_due(row) for row in rows]


def _due(row: Any) -> Due:
    return Due(row.user_id, row.count, StoredMessage.model_validate_json(row.last_message))
