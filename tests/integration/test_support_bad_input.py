"""Bad input to live support: a clear 4xx JSON error, and nothing changes. And
the broker keeps the operators' topics to operators."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bridge import topics
from chatclient import ApiError, NotAuthorized
from tests.integration.support_helpers import customer, operator, support_event
from tools.stack import Stack

pytestmark = pytest.mark.anyio


async def expect(status: int, code: str, call: Any) -> None:
    with pytest.raises(ApiError) as error:
        await call
    assert (error.value.status, error.value.code) == (status, code)


async def test_refused_requests_change_nothing(desk_stack: Stack) -> None:
    async with (
        customer(desk_stack, "owner") as owner,
        customer(desk_stack, "stranger") as stranger,
        operator(desk_stack, "ana", capacity=1, status="away") as ana,
    ):
        ticket = await owner.http.open_ticket("broken phone", "normal")
        ticket_id = ticket["ticket_id"]
        before = await ana.http.ticket(ticket_id)

        # Not an operator: operator endpoints are forbidden.
        await expect(403, "forbidden", owner.http.take_ticket(ticket_id))
        await expect(403, "forbidden", owner.http.tickets("queue"))
        await expect(403, "forbidden", owner.http.set_operator_status("online"))
        await expect(403, "forbidden", ana.http.support_overview())
        # Unknown tickets, and other users' tickets, do not exist for you.
        await expect(404, "not_found", ana.http.take_ticket("t_unknown"))
        await expect(404, "not_found", stranger.http.ticket(ticket_id))
        await expect(404, "not_found", stranger.http.close_ticket(ticket_id))
        await expect(404, "not_found", stranger.http.rate_ticket(ticket_id, 5))
        # Rating: only once closed, only 1-5.
        await expect(409, "not_closed", owner.http.rate_ticket(ticket_id, 5))
        await expect(422, "invalid_payload", owner.http.rate_ticket(ticket_id, 6))
        await expect(422, "invalid_payload", owner.http.rate_ticket(ticket_id, 0))
        # Transfer of a ticket that is not hers.
        await expect(403, "forbidden", ana.http.transfer_ticket(ticket_id, None))

        after = await ana.http.ticket(ticket_id)
        assert {k: v for k, v in after.items() if k != "position"} == {
            k: v for k, v in before.items() if k != "position"
        }

        # A closed ticket can be neither taken, closed again, nor transferred.
        await owner.http.close_ticket(ticket_id)
        await expect(409, "not_queued", ana.http.take_ticket(ticket_id))
        await expect(409, "closed", owner.http.close_ticket(ticket_id))
        await expect(422, "invalid_payload", owner.http.rate_ticket(ticket_id, 3.5))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "body",
    [
        {"subject": "x", "priority": "critical"},
        {"subject": "", "priority": "low"},
        {"subject": "   ", "priority": "low"},
        {"priority": "low"},
        {"subject": "x", "priority": "low", "extra": 1},
        {"subject": "x" * 201, "priority": "low"},
        {"subject": "x", "priority": "low", "text": ""},
        {"subject": "x", "priority": "low", "text": "y" * 4001},
        {"subject": 5, "priority": "low"},
        [],
    ],
)
async def test_malformed_ticket_bodies_are_422_and_open_nothing(stack: Stack, body: object) -> None:
    async with httpx.AsyncClient(base_url=stack.config.api_url) as http:
        session = (
            await http.post(
                "/v1/auth/register",
                json={
                    "username": f"bad_{id(body)}",
                    "password": "correct horse",
                    "display_name": "B",
                },
            )
        ).json()
        headers = {"Authorization": f"Bearer {session['access_token']}"}
        response = await http.post("/v1/support/tickets", json=body, headers=headers)
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "invalid_payload"
        mine = await http.get("/v1/support/tickets", headers=headers)
        assert mine.json() == {"tickets": []}


async def test_only_operators_read_the_queue_and_only_supervisors_the_floor(
    desk_stack: Stack,
) -> None:
    async with (
        customer(desk_stack) as user,
        operator(desk_stack, "ana", status="away") as ana,
        operator(desk_stack, "boss", status="away", supervisor=True) as boss,
    ):
        with pytest.raises(NotAuthorized):
            await user.client.watch_queue()
        await ana.client.watch_queue()
        floor_refused = await ana.client.mqtt.subscribe([(topics.ops_floor(), 1)])
        assert floor_refused[0] >= 0x80
        floor_granted = await boss.client.mqtt.subscribe([(topics.ops_floor(), 1)])
        assert floor_granted[0] < 0x80
        # An operator is still a user: another user's topics stay closed.
        other = await ana.client.mqtt.subscribe([(topics.user_support(user.user_id), 1)])
        assert other[0] >= 0x80
        ticket = await user.http.open_ticket("hello", "low")
        await support_event(user, ticket["ticket_id"], "queued")
