"""Support pushes through Expo (the Expo double: Expo cannot be reached from
the test machines): a user who is away hears that an operator took their
request, what the operator answered, and that it was closed."""

from __future__ import annotations

import secrets

import pytest

from chatclient import ChatHttp
from tests.integration.support_helpers import operator
from tests.integration.test_push_calls import messages_to
from tools.expo_double import ExpoDouble
from tools.stack import Stack

pytestmark = pytest.mark.anyio


async def test_an_away_user_is_pushed_assigned_the_answer_and_closed(
    desk_stack: Stack, expo: ExpoDouble
) -> None:
    async with ChatHttp(desk_stack.config.api_url) as http:
        session = await http.register(f"away_{secrets.token_hex(4)}", "correct horse", "Away")
        token = f"ExponentPushToken[support{secrets.token_hex(6)}]"
        await http._json("POST", "/v1/devices", json={"platform": "ios", "push_token": token})
        ticket = await http.open_ticket("refund", "normal")
        async with operator(desk_stack, "ana") as ana:
            [assigned] = await messages_to(expo, token, 1)
            assert assigned["body"] == f"{ana.name} will answer you now"
            assert assigned["data"] == {
                "type": "support",
                "event": "assigned",
                "ticket_id": ticket["ticket_id"],
                "conv_id": ticket["conv_id"],
            }
            # The operator's answer reaches the away user like any message.
            await ana.client.send_text(ticket["conv_id"], "Refund on its way")
            answer = (await messages_to(expo, token, 2))[1]
            assert answer["title"] == ana.name and answer["body"] == "Refund on its way"
            assert answer["data"]["type"] == "message"
            assert answer["data"]["conv_id"] == ticket["conv_id"]
            await ana.http.close_ticket(ticket["ticket_id"])
            pushes = await messages_to(expo, token, 3)
            assert pushes[2]["data"]["event"] == "closed"
    assert session.user_id
