"""Rate limits on a stack of their own: messages per user (MQTT and HTTP), logins
and registrations per client address. A refused request changes nothing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import pytest

from bridge import topics
from bridge.topics import UpKind
from tests.conftest import single_stack
from tests.factories import ApiUser, register
from tests.integration.mqtt_helpers import drain, inbox, text_send, wait_for
from tools.stack import Stack

pytestmark = pytest.mark.anyio

BURST = 5
REGISTRATIONS = 6  # the fixture's users, then the test that runs out
LOGINS = 3


@pytest.fixture(scope="module")
def limited(database_factory: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One persistence instance: a user's sends meet one bucket, so counts are exact."""
    stack = single_stack(
        database_factory(),  # type: ignore[operator]
        tmp_path_factory.mktemp("limits"),
        MESSAGE_RATE_PER_SECOND="1",
        MESSAGE_RATE_BURST=str(BURST),
        LOGIN_ATTEMPTS_PER_MINUTE=str(LOGINS),
        REGISTRATIONS_PER_HOUR=str(REGISTRATIONS),
    )
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def pair(limited: Stack) -> tuple[ApiUser, ApiUser]:
    api = limited.config.api_url
    return register(api, "seller"), register(api, "buyer")


def history(user: ApiUser, conv: str) -> list[dict[str, object]]:
    response = user.request("GET", f"/v1/conversations/{conv}/messages?limit=100")
    assert response.status_code == 200, response.text
    messages: list[dict[str, object]] = response.json()["messages"]
    return messages


async def test_a_burst_past_the_bucket_is_refused_and_a_resend_still_acked(
    pair: tuple[ApiUser, ApiUser],
) -> None:
    seller, buyer = pair
    conv = seller.conversation(buyer)
    async with inbox(seller) as s, inbox(buyer) as b:
        up = topics.conv_up(conv, UpKind.MSG, seller.user_id)
        for index in range(20):
            await s.publish(up, text_send(f"burst-{index}"))
        acks = [
            json.loads(m.payload)
            for m in await drain(s, quiet=0.5)
            if m.topic == topics.user_ack(seller.user_id)
        ]
        assert len(acks) == 20
        stored = [a for a in acks if a["status"] == "stored"]
        refused = [a for a in acks if a["status"] == "rejected"]
        assert {a["error"]["code"] for a in refused} == {"rate_limited"}
        # The bucket's burst, plus what refilled (1/s) while the burst went by.
        assert BURST <= len(stored) <= BURST + 2
        assert len(stored) + len(refused) == 20
        kept = history(seller, conv)
        assert [m["seq"] for m in kept] == list(range(1, len(stored) + 1))
        assert {m["client_msg_id"] for m in kept} == {a["client_msg_id"] for a in stored}
        delivered = [m for m in await drain(b) if m.topic.endswith("/msg")]
        assert len(delivered) == len(stored)

        # Still over the limit: a re-send of a stored message gets its original
        # ack (the outbox must not be told "refused" for what was kept).
        first = stored[0]
        await s.publish(up, text_send(str(first["client_msg_id"])))
        again = await wait_for(s, "/ack", client_msg_id=first["client_msg_id"])
        assert again["status"] == "duplicate" and again["seq"] == first["seq"]

        # The bucket refills: after a pause a new message is stored.
        await asyncio.sleep(1.5)
        await s.publish(up, text_send("after-pause"))
        later = await wait_for(s, "/ack", client_msg_id="after-pause")
        assert later["status"] == "stored" and later["seq"] == len(stored) + 1


def test_http_sends_share_the_limit(pair: tuple[ApiUser, ApiUser]) -> None:
    seller, buyer = pair
    conv = buyer.conversation(seller)
    codes = [
        buyer.request(
            "POST",
            f"/v1/conversations/{conv}/messages",
            json={"client_msg_id": f"http-{index}", "kind": "text", "text": "hello"},
        )
        for index in range(BURST + 3)
    ]
    statuses = [r.status_code for r in codes]
    assert statuses.count(201) >= BURST and 429 in statuses
    refused = next(r for r in codes if r.status_code == 429)
    assert refused.json()["error"]["code"] == "rate_limited"
    kept = [m for m in history(buyer, conv) if str(m["client_msg_id"]).startswith("http-")]
    assert len(kept) == statuses.count(201)


def test_login_attempts_are_limited_per_address_and_username(limited: Stack) -> None:
    api = limited.config.api_url
    user = register(api, "target")
    wrong = {"username": user.username, "password": "not the password"}
    for _ in range(LOGINS):
        assert httpx.post(f"{api}/v1/auth/login", json=wrong).status_code == 401
    right = {"username": user.username, "password": "correct horse"}
    refused = httpx.post(f"{api}/v1/auth/login", json=right)
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1
    # Another account from the same address is not locked out by it.
    other = register(api, "bystander")
    fine = httpx.post(
        f"{api}/v1/auth/login", json={"username": other.username, "password": "correct horse"}
    )
    assert fine.status_code == 200, fine.text


def test_registrations_are_limited_per_address(limited: Stack) -> None:
    api = limited.config.api_url
    statuses = []
    for index in range(REGISTRATIONS + 1):
        response = httpx.post(
            f"{api}/v1/auth/register",
            json={"username": f"many_{index}_x", "password": "correct horse", "display_name": "M"},
        )
        statuses.append(response.status_code)
    assert statuses[-1] == 429 and 201 in statuses
    # Nothing was made for the refused one: the username is still free.
    refused_name = f"many_{REGISTRATIONS}_x"
    login = httpx.post(
        f"{api}/v1/auth/login", json={"username": refused_name, "password": "correct horse"}
    )
    assert login.status_code == 401
