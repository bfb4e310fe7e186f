"""The routing rules of docs/support.md, as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.support_router.queue import (
    Candidate,
    Waiting,
    effective_priority,
    estimated_wait_seconds,
    pick_operator,
    queue_order,
)

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
AGING = 300.0


def waiting(ticket_id: str, priority: str, waited: float, front: bool = False) -> Waiting:
    return Waiting(ticket_id, priority, NOW - timedelta(seconds=waited), front)  # type: ignore[arg-type]


def op(
    operator_id: str,
    open_chats: int = 0,
    capacity: int = 3,
    status: str = "online",
    connected: bool = True,
    last: float | None = None,
) -> Candidate:
    at = NOW - timedelta(seconds=last) if last is not None else None
    return Candidate(operator_id, status, connected, open_chats, capacity, at)


def order(*tickets: Waiting) -> list[str]:
    return [t.ticket_id for t in queue_order(list(tickets), NOW, AGING)]


def test_priority_first_then_the_longest_waiting() -> None:
    assert order(
        waiting("low", "low", 10),
        waiting("normal-new", "normal", 5),
        waiting("urgent", "urgent", 1),
        waiting("normal-old", "normal", 60),
        waiting("high", "high", 2),
    ) == ["urgent", "high", "normal-old", "normal-new", "low"]


@pytest.mark.parametrize(
    ("priority", "waited", "expected"),
    [
        ("low", 0, "low"),
        ("low", 299, "low"),
        ("low", 300, "normal"),
        ("low", 600, "high"),
        ("low", 900, "urgent"),
        ("low", 10_000, "urgent"),
        ("high", 300, "urgent"),
        ("urgent", 0, "urgent"),
    ],
)
def test_aging_raises_one_level_per_step_up_to_urgent(
    priority: str, waited: float, expected: str
) -> None:
    assert effective_priority(priority, waited, AGING) == expected  # type: ignore[arg-type]


def test_a_low_ticket_that_waited_long_enough_goes_before_new_urgent_ones() -> None:
    assert order(waiting("urgent-new", "urgent", 5), waiting("low-old", "low", 901)) == [
        "low-old",
        "urgent-new",
    ]


def test_tickets_put_back_by_the_system_go_first() -> None:
    assert order(
        waiting("urgent", "urgent", 100),
        waiting("back", "low", 1, front=True),
    ) == ["back", "urgent"]


def test_the_operator_with_fewest_open_chats_is_chosen() -> None:
    chosen = pick_operator([op("busy", open_chats=2), op("idle", open_chats=0), op("mid", 1)])
    assert chosen is not None and chosen.operator_id == "idle"


def test_ties_go_to_whoever_waited_longest_since_their_last_assignment() -> None:
    chosen = pick_operator([op("recent", last=5), op("long-ago", last=500), op("mid", last=50)])
    assert chosen is not None and chosen.operator_id == "long-ago"
    never = pick_operator([op("recent", last=5), op("never")])
    assert never is not None and never.operator_id == "never"


@pytest.mark.parametrize(
    "ineligible",
    [
        op("full", open_chats=3, capacity=3),
        op("away", status="away"),
        op("offline", status="offline"),
        op("disconnected", connected=False),
    ],
)
def test_only_online_connected_operators_under_capacity_are_eligible(
    ineligible: Candidate,
) -> None:
    assert pick_operator([ineligible]) is None
    chosen = pick_operator([ineligible, op("ok", open_chats=2)])
    assert chosen is not None and chosen.operator_id == "ok"


def test_the_operator_who_missed_the_sla_is_skipped_unless_alone() -> None:
    chosen = pick_operator([op("missed"), op("other", open_chats=2)], skip="missed")
    assert chosen is not None and chosen.operator_id == "other"
    alone = pick_operator([op("missed")], skip="missed")
    assert alone is not None and alone.operator_id == "missed"


def test_estimated_wait() -> None:
    assert estimated_wait_seconds(3, online_capacity=0, handling_seconds=100) is None
    assert estimated_wait_seconds(3, online_capacity=6, handling_seconds=100) == 50
    assert estimated_wait_seconds(1, online_capacity=1, handling_seconds=None) == 300
