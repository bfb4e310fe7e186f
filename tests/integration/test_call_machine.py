"""The call state machine straight on the database (SQLite or PostgreSQL, by
`--db`): glare resolves to the same call whatever the order, also when both
invites run at once on two connections; an overdue ring frees the line; the
common invite's fast path stores what the general transaction stores, files it
under the same conversation, and leaves every other case to it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select
from sqlmodel import Session

from core.db import make_engine, migrate
from core.ids import new_id
from core.models import Call, CallLine, Conversation, Member, User
from core.timefmt import utcnow
from services.callsig import invite_pg, invite_sqlite, machine
from services.callsig.machine import InviteRequest

RING = timedelta(seconds=45)


@pytest.fixture
def engine(database_factory: Callable[[], str]) -> Engine:
    url = database_factory()
    migrate(url)
    return make_engine(url)


def _users(engine: Engine, *names: str) -> list[str]:
    ids = [new_id("u_") for _ in names]
    with Session(engine) as session:
        for user_id, name in zip(ids, names, strict=True):
            session.add(User(id=user_id, username=user_id, password_hash="-", display_name=name))
        session.commit()
    return ids


def _converse(engine: Engine, *user_ids: str, conv_id: str | None = None) -> None:
    with Session(engine) as session:
        kind = "direct" if len(user_ids) == 2 else "group"
        conv = Conversation(id=conv_id or new_id("c_"), kind=kind)
        session.add(conv)
        session.flush()
        for user_id in user_ids:
            session.add(Member(conv_id=conv.id, user_id=user_id))
        session.commit()


def _invite(engine: Engine, call_id: str, caller: str, callee: str) -> machine.Effects:
    request = InviteRequest(call_id, caller, callee, "audio", utcnow(), RING)
    return machine.invite(engine, request)


def _statuses(engine: Engine, *call_ids: str) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(select(Call.id, Call.status).where(Call.id.in_(call_ids)))  # type: ignore[attr-defined]
        return {row.id: row.status for row in rows}


def _lines(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return {r.user_id: r.call_id for r in conn.execute(select(CallLine))}


@pytest.mark.parametrize("first", ["smaller", "larger"])
def test_glare_keeps_the_smaller_call_id_in_either_order(engine: Engine, first: str) -> None:
    alice, bob = _users(engine, "Alice", "Bob")
    _converse(engine, alice, bob)
    invites = {"smaller": ("call-1", alice, bob), "larger": ("call-2", bob, alice)}
    second = "larger" if first == "smaller" else "smaller"
    _invite(engine, *invites[first])
    effects = _invite(engine, *invites[second])

    assert _statuses(engine, "call-1", "call-2") == {"call-1": "ringing", "call-2": "cancelled"}
    assert _lines(engine) == {alice: "call-1", bob: "call-1"}
    told = {(n.user.user_id, n.call.call_id, n.event) for n in effects.notices}
    assert (bob, "call-2", "ended") in told
    assert not any(n.event == "busy" for n in effects.notices)


def _invite_at(
    start: threading.Barrier,
    errors: list[BaseException],
    engine: Engine,
    call_id: str,
    caller: str,
    callee: str,
) -> None:
    try:
        start.wait()
        _invite(engine, call_id, caller, callee)
    except BaseException as exc:  # reported by the test
        errors.append(exc)


def test_simultaneous_glare_on_two_connections_ends_as_one_call(engine: Engine) -> None:
    rounds = 10
    pairs = [_users(engine, "A", "B") for _ in range(rounds)]
    for a, b in pairs:
        _converse(engine, a, b)
    for index, (a, b) in enumerate(pairs):
        start = threading.Barrier(2)
        errors: list[BaseException] = []
        smaller, larger = f"r{index}-a", f"r{index}-b"
        threads = [
            threading.Thread(target=_invite_at, args=(start, errors, engine, smaller, a, b)),
            threading.Thread(target=_invite_at, args=(start, errors, engine, larger, b, a)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert errors == []
        assert _statuses(engine, smaller, larger) == {smaller: "ringing", larger: "cancelled"}
        lines = _lines(engine)
        assert (lines[a], lines[b]) == (smaller, smaller)


def test_an_overdue_ringing_call_does_not_keep_the_callee_busy(engine: Engine) -> None:
    alice, bob, carol = _users(engine, "Alice", "Bob", "Carol")
    _converse(engine, alice, bob, carol)
    past = utcnow() - timedelta(minutes=5)
    machine.invite(engine, InviteRequest("old", alice, bob, "video", past, timedelta(seconds=45)))
    effects = _invite(engine, "new", carol, bob)
    assert _statuses(engine, "old", "new") == {"old": "missed", "new": "ringing"}
    events = {(n.user.user_id, n.call.call_id, n.event) for n in effects.notices}
    assert {(alice, "old", "ended"), (bob, "old", "missed"), (bob, "new", "incoming")} <= events


def _fast_path(engine: Engine) -> Callable[[Engine, InviteRequest], tuple[str, str] | None]:
    return invite_pg.try_ring if engine.dialect.name == "postgresql" else invite_sqlite.try_ring


def test_the_fast_invite_stores_the_call_as_the_general_transaction_does(engine: Engine) -> None:
    alice, bob, carol, dave = _users(engine, "Alice", "Bob", "Carol", "Dave")
    _converse(engine, alice, bob)
    _converse(engine, carol, dave)
    now = utcnow().replace(microsecond=123456)
    fast = InviteRequest("fast", alice, bob, "video", now, RING)
    assert _fast_path(engine)(engine, fast) == ("Alice", "Bob")
    machine.invite_in_transaction(engine, InviteRequest("general", carol, dave, "video", now, RING))

    with Session(engine) as session:
        by_fast, by_general = session.get(Call, "fast"), session.get(Call, "general")
        assert by_fast is not None and by_general is not None
        stored = by_fast.model_dump(exclude={"id", "caller_id", "callee_id", "conv_id"})
        assert stored == by_general.model_dump(exclude={"id", "caller_id", "callee_id", "conv_id"})
    assert (by_fast.status, by_fast.created_at.replace(tzinfo=None)) == (
        "ringing",
        now.replace(tzinfo=None),
    )
    assert by_fast.ring_deadline.replace(tzinfo=None) == (now + RING).replace(tzinfo=None)
    assert _lines(engine) == {alice: "fast", bob: "fast", carol: "general", dave: "general"}


def test_the_fast_invite_leaves_every_other_case_to_the_general_transaction(
    engine: Engine,
) -> None:
    alice, bob, carol, stranger = _users(engine, "Alice", "Bob", "Carol", "Stranger")
    _converse(engine, alice, bob, carol)
    fast = _fast_path(engine)
    assert fast(engine, InviteRequest("first", alice, bob, "audio", utcnow(), RING)) is not None
    declined = {
        "busy callee": InviteRequest("busy", carol, bob, "audio", utcnow(), RING),
        "repeated id": InviteRequest("first", carol, alice, "audio", utcnow(), RING),
        "no shared conversation": InviteRequest("lone", carol, stranger, "audio", utcnow(), RING),
        "unknown callee": InviteRequest("ghost", carol, "u_nobody", "audio", utcnow(), RING),
        "self call": InviteRequest("self", carol, carol, "audio", utcnow(), RING),
    }
    for case, request in declined.items():
        assert fast(engine, request) is None, case
    # Nothing was written, and the connections it used are clean: the general
    # transaction runs on them and decides.
    assert _statuses(engine, "first", "busy", "lone", "ghost", "self") == {"first": "ringing"}
    effects = machine.invite(engine, InviteRequest("busy", carol, bob, "audio", utcnow(), RING))
    assert [(n.user.user_id, n.event) for n in effects.notices] == [(carol, "busy")]
    assert _statuses(engine, "busy") == {"busy": "busy"}


def test_both_invite_paths_file_the_call_under_the_same_shared_conversation(
    engine: Engine,
) -> None:
    """The rule lives in three queries (statements.INVITE_FACTS, invite_pg,
    invite_sqlite): the direct conversation first, else the smallest id."""
    chosen: dict[str, dict[str, str | None]] = {"fast": {}, "general": {}}
    for path in chosen:
        a, b, c, d = _users(engine, "A", "B", "C", "D")
        groups = [f"c_{path}_group_{n}" for n in (1, 2)]  # ids smaller than the direct one's
        _converse(engine, a, b, c, conv_id=groups[1])
        _converse(engine, a, b, d, conv_id=groups[0])
        _converse(engine, a, b, conv_id=f"c_{path}_zdirect")
        _converse(engine, c, d, a, conv_id=groups[1] + "_x")
        _converse(engine, c, d, b, conv_id=groups[0] + "_x")
        for call_id, caller, callee in ((f"{path}-ab", a, b), (f"{path}-cd", c, d)):
            request = InviteRequest(call_id, caller, callee, "audio", utcnow(), RING)
            if path == "fast":
                assert _fast_path(engine)(engine, request) is not None
            else:
                machine.invite_in_transaction(engine, request)
            with Session(engine) as session:
                call = session.get(Call, call_id)
                assert call is not None
                chosen[path][call_id.split("-")[1]] = call.conv_id
    assert chosen["fast"] == {"ab": "c_fast_zdirect", "cd": "c_fast_group_1_x"}
    assert chosen["general"] == {"ab": "c_general_zdirect", "cd": "c_general_group_1_x"}
