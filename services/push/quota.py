"""The per-user limit of message pushes (`PUSH_USER_PER_MINUTE`), counted in
the database so that it holds for all push instances together.

A user's quota is `limit` pushes in the minute from the first of them. Taking
from it is a conditional UPDATE (a compare-and-set: a concurrent taker on
another instance waits for the row and re-checks), so the limit is exact; a
user's first push inserts the row. A whole batch of users costs three
statements, whatever its size.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, case, or_, update

from core.models import PushQuota
from services.push.upsert import insert_new

PERIOD = timedelta(minutes=1)

quota_t = PushQuota.__table__  # type: ignore[attr-defined]

_expired = quota_t.c.period_start <= bindparam("b_cutoff")
_TAKE = (
    update(quota_t)
    .where(
        quota_t.c.user_id.in_(bindparam("b_users", expanding=True)),
        or_(_expired, quota_t.c.used < bindparam("b_limit")),
    )
    .values(
        used=case((_expired, 1), else_=quota_t.c.used + 1),
        period_start=case((_expired, bindparam("b_now")), else_=quota_t.c.period_start),
    )
    .returning(quota_t.c.user_id)
)


def take(engine: Engine, user_ids: Iterable[str], limit: int, now: datetime) -> set[str]:
    """Take one push from each user's quota: the users who had one left."""
    wanted = set(user_ids)
    values: dict[str, Any] = {"b_limit": limit, "b_now": now, "b_cutoff": now - PERIOD}
    with engine.begin() as conn:
        allowed = _take(conn, wanted, values)
        rest = wanted - allowed
        if not rest:
            return allowed
        first = insert_new(conn, quota_t).returning(quota_t.c.user_id)
        rows = [{"user_id": user_id, "period_start": now, "used": 1} for user_id in sorted(rest)]
        allowed |= {row.user_id for row in conn.execute(first, rows)}
        # Users whose row another instance made meanwhile may have pushes left.
        raced = rest - allowed
        if raced:
            allowed |= _take(conn, raced, values)
    return allowed


def _take(conn: Connection, user_ids: set[str], values: dict[str, Any]) -> set[str]:
    rows = conn.execute(_TAKE, {**values, "b_users": sorted(user_ids)})
    return {row.user_id for row in rows}
