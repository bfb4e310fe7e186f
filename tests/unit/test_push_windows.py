"""Push windows and quotas in the database (SQLite or PostgreSQL, by `--db`):
what several push instances rely on to push each window once and keep the
per-user limit together."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine, insert

from bridge.wire.messaging import StoredMessage
from core.db import make_engine, migrate
from core.models import Conversation, User
from core.timefmt import to_wire, utcnow
from services.push import quota, windows

USERS = ["u1", "u2", "u3"]


@pytest.fixture
def engine(database_factory: object) -> Iterator[Engine]:
    url = database_factory()  # type: ignore[operator]
    migrate(url)
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(
            insert(User),
            [
                {"id": u, "username": u, "password_hash": "-", "display_name": u}
                for u in [*USERS, "sender"]
            ],
        )
        conn.execute(insert(Conversation), [{"id": "c1", "kind": "direct"}])
    yield engine
    engine.dispose()


def message(seq: int) -> StoredMessage:
    return StoredMessage(
        id=f"id{seq}",
        conv_id="c1",
        seq=seq,
        sender_id="sender",
        client_msg_id=f"m{seq}",
        kind="text",
        text=f"text {seq}",
        media=None,
        reply_to=None,
        created_at=to_wire(utcnow()),
    )


def test_a_window_opens_once_counts_every_message_and_is_taken_once(engine: Engine) -> None:
    due = utcnow() + timedelta(seconds=1)
    assert windows.count_in(engine, message(1), USERS[:2], due) == ["u1", "u2"]
    # Out of order: the count grows, the newest message stays the one shown.
    assert windows.count_in(engine, message(3), USERS, due) == ["u3"]
    assert windows.count_in(engine, message(2), USERS, due) == []
    [taken] = windows.take(engine, [("u1", "c1")])
    assert (taken.user_id, taken.count, taken.last.seq) == ("u1", 3, 3)
    assert windows.take(engine, [("u1", "c1")]) == []
    assert windows.take_overdue(engine, utcnow()) == []  # not due yet
    overdue = windows.take_overdue(engine, due + timedelta(seconds=1))
    assert sorted((d.user_id, d.count, d.last.seq) for d in overdue) == [
        ("u2", 3, 3),
        ("u3", 2, 3),
    ]
    assert windows.take_overdue(engine, due + timedelta(seconds=1)) == []


def test_the_quota_is_exact_and_renews_after_a_minute(engine: Engine) -> None:
    now = utcnow()
    assert quota.take(engine, ["u1", "u2"], 2, now) == {"u1", "u2"}
    assert quota.take(engine, ["u1"], 2, now) == {"u1"}
    assert quota.take(engine, ["u1", "u2", "u3"], 2, now) == {"u2", "u3"}
    assert quota.take(engine, ["u1", "u2"], 2, now + timedelta(seconds=30)) == set()
    assert quota.take(engine, ["u1"], 2, now + quota.PERIOD) == {"u1"}
