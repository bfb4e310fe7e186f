"""Live support end to end on the real broker: a ticket routed to an operator,
the chat through the messaging path, transfer, close and rating."""

from __future__ import annotations

import pytest

from chatclient import ApiError
from tests.integration.support_helpers import (
    customer,
    desk_event,
    operator,
    queue_where,
    support_event,
)
from tools.stack import Stack

pytestmark = pytest.mark.anyio


async def test_a_ticket_is_assigned_and_the_chat_runs_over_the_messaging_path(
    desk_stack: Stack,
) -> None:
    async with operator(desk_stack, "ana") as ana, customer(desk_stack) as user:
        created = await user.http.open_ticket("Where is my order?", "high", "It did not arrive")
        assert created["status"] in ("queued", "assigned")
        ticket_id, conv_id = created["ticket_id"], created["conv_id"]

        assigned = await support_event(user, ticket_id, "assigned")
        assert assigned.agent is not None and assigned.agent.id == ana.user_id
        assert assigned.agent.name == ana.name and assigned.conv_id == conv_id
        on_desk = await desk_event(ana, ticket_id, "assigned")
        assert on_desk.ticket.user.id == user.user_id
        assert on_desk.ticket.subject == "Where is my order?"

        # The operator sees the user's first message in history, and answers.
        history = await ana.http.history(conv_id)
        assert [m.text for m in history] == ["It did not arrive"]
        ack = await ana.client.send_text(conv_id, "Let me check")
        answer = await user.client.wait_for_message(lambda m: m.id == ack.id)
        assert answer.sender_id == ana.user_id

        closed = await user.http.close_ticket(ticket_id)
        assert closed["status"] == "closed" and closed["closed_by"] == "user"
        assert (await support_event(user, ticket_id, "closed")).reason == "closed_by_user"
        await desk_event(ana, ticket_id, "closed")
        rated = await user.http.rate_ticket(ticket_id, 5, "quick")
        assert rated["rating"] == 5
        with pytest.raises(ApiError) as again:
            await user.http.rate_ticket(ticket_id, 4)
        assert again.value.status == 409 and again.value.code == "already_rated"
        me = await ana.http.set_operator_status("online")
        assert me["open_chats"] == 0


async def test_without_operators_the_user_waits_with_a_position_then_is_assigned(
    desk_stack: Stack,
) -> None:
    async with customer(desk_stack, "first") as first, customer(desk_stack, "second") as second:
        one = await first.http.open_ticket("one", "normal")
        two = await second.http.open_ticket("two", "normal")
        assert one["position"] == 1 and two["position"] == 2
        waiting = await support_event(second, two["ticket_id"], "queued")
        assert waiting.position == 2
        async with operator(desk_stack, "ana", capacity=1) as ana:
            assert (await support_event(first, one["ticket_id"], "assigned")).agent is not None
            moved = await support_event(
                second, two["ticket_id"], "queued", lambda e: e.position == 1
            )
            assert moved.estimated_wait_seconds is not None
            await ana.client.watch_queue()
            snapshot = await queue_where(ana, lambda s: len(s.tickets) == 1)
            assert snapshot.tickets[0].ticket_id == two["ticket_id"]
