"""The load and fault suite (tools/loadtest, docs/load.md), run at a tiny size.

It runs the real command, which starts its own PostgreSQL and its own system;
what is asserted is what the suite exists to show: under traffic and with a
service killed -9, nothing acknowledged is lost, nothing is stored twice,
and messages flow again on their own. No timing is asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session

from core.db import make_engine, migrate
from core.ids import new_id
from core.models import Conversation, Message, User
from tools.loadtest.ledger import Ledger, Sent
from tools.loadtest.phases import account
from tools.loadtest.postgres import private_postgres
from tools.stack import PROJECT_DIR

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def run_suite(tmp_path: Path, *flags: str) -> tuple[subprocess.CompletedProcess[str], Any]:
    figures = tmp_path / "figures.json"
    result = subprocess.run(
        [sys.executable, "-m", "tools.loadtest", "--json", str(figures), *flags],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    report = json.loads(figures.read_text()) if figures.exists() else None
    return result, report


def test_a_killed_persistence_service_under_traffic_loses_and_duplicates_nothing(
    tmp_path: Path,
) -> None:
    result, report = run_suite(
        tmp_path,
        *("--connections", "50", "--devices-per-user", "5", "--pairs", "5"),
        *("--http-lanes", "1", "--http-share", "0.1", "--rate", "40"),
        *("--duration", "3", "--before-seconds", "1", "--after-seconds", "2"),
        *("--down-seconds", "1", "--faults", "kill-persistence"),
    )
    assert report is not None, result.stdout + result.stderr
    assert result.returncode == 0, result.stdout + result.stderr

    connections = report["connections"]
    assert connections["established"] == connections["wanted"] == 50
    load = report["load"]
    (fault,) = report["faults"]
    assert fault["name"] == "kill-persistence"
    for phase in (load, fault):
        # Traffic really flowed over both paths, and every message is accounted for.
        assert phase["tried"] > 0
        assert phase["sent"] == phase["stored"] == phase["delivered"] == phase["tried"]
        assert phase["lost"] == phase["duplicates"] == phase["unacked"] == 0
        assert phase["refused"] == {}
    assert fault["recovery_seconds"] is not None
    assert fault["restart_seconds"] is not None
    assert report["clean"] is True
    # The memory table names the broker and every service.
    assert {"broker", "api", "persistence-1", "presence-1"} <= set(report["memory_under_load"])
    assert "nothing lost, nothing stored twice" in result.stdout


@pytest.mark.anyio
async def test_the_accounting_counts_what_the_database_lacks_or_holds_twice() -> None:
    """A phase whose messages met every fate: the accounting must see each one.

    The rows are written straight into a migrated database of the suite's own
    PostgreSQL (a second row for one client message id sits in another of the
    phase's conversations: the unique index forbids it within one)."""
    alice, bob = new_id("u_"), new_id("u_")
    first, second = new_id("c_"), new_id("c_")
    phase = Ledger("t").open_phase("fates")
    kept, never_stored, undelivered, twice, unacked = (
        Sent(phase.next_client_msg_id(), conv, alice, "mqtt", 0.0)
        for conv in (first, first, first, first, second)
    )
    rows = [(kept, first, 1), (undelivered, first, 2), (twice, first, 3), (twice, second, 1)]
    for sent in (kept, never_stored, undelivered, twice):
        sent.ack_status = "stored"
    for sent in (kept, twice):
        sent.delivered_at = 1.0
        sent.delivered_ids.add(new_id("m_"))
    for sent in (kept, never_stored, undelivered, twice, unacked):
        phase.record(sent)

    with private_postgres() as server:
        migrate(server.url)
        engine = make_engine(server.url)
        try:
            with Session(engine) as session:
                session.add_all([_user(alice), _user(bob)])
                session.add_all([Conversation(id=c, kind="direct") for c in (first, second)])
                session.flush()
                session.add_all(
                    [_message(s.client_msg_id, conv, alice, seq) for s, conv, seq in rows]
                )
                session.commit()
        finally:
            engine.dispose()
        result = await account(phase, server.url)

    assert (result.tried, result.sent, result.stored) == (5, 4, 3)
    assert result.lost == 2  # acknowledged but never stored; stored but never delivered
    assert result.duplicates == 1
    assert result.unacked == 1
    assert not result.clean
    lost = " | ".join(result.lost_detail)
    assert never_stored.client_msg_id in lost
    assert undelivered.client_msg_id in lost
    assert kept.client_msg_id not in lost


def _user(user_id: str) -> User:
    return User(id=user_id, username=user_id, password_hash="-", display_name=user_id)


def _message(client_msg_id: str, conv_id: str, sender_id: str, seq: int) -> Message:
    return Message(
        id=new_id("m_"),
        conv_id=conv_id,
        seq=seq,
        sender_id=sender_id,
        kind="text",
        text="x",
        client_msg_id=client_msg_id,
    )
