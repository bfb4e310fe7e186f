"""Access rules enforced by the broker itself, on the project's config."""

from __future__ import annotations

import asyncio

import pytest

from bridge import topics
from bridge.mqtt import NotAuthorized
from bridge.topics import UpKind
from tests.factories import register
from tests.integration.mqtt_helpers import device_connection, drain, inbox, text_send, wait_for
from tools.stack import Stack

pytestmark = pytest.mark.anyio


async def test_wildcards_never_reach_other_users(stack: Stack) -> None:
    api = stack.config.api_url
    alice, bob, eve = register(api, "alice"), register(api, "bob"), register(api, "eve")
    conv = alice.conversation(bob)
    async with inbox(alice) as a, device_connection(eve.device()) as e:
        refused = await e.subscribe(
            [
                ("#", 1),
                ("user/#", 1),
                (topics.user_root(bob.user_id), 1),
                ("conv/#", 1),
                ("$SYS/#", 1),
            ]
        )
        assert all(code >= 0x80 for code in refused)
        assert (await e.subscribe([(topics.user_root(eve.user_id), 1)])) == [1]
        await a.publish(topics.conv_up(conv, UpKind.MSG, alice.user_id), text_send("s1"))
        await wait_for(a, "/ack", client_msg_id="s1", status="stored")
        assert await drain(e) == []


async def test_publishing_as_someone_else_is_dropped_by_the_broker(stack: Stack) -> None:
    api = stack.config.api_url
    alice, bob, mallory = register(api, "alice"), register(api, "bob"), register(api, "mal")
    conv = alice.conversation(bob)
    async with inbox(bob) as b, inbox(mallory) as m:
        # Mallory speaks as Alice: the broker refuses it (MQTT 5 reason code), so
        # no service and no member ever sees it.
        forged = m.publish(topics.conv_up(conv, UpKind.MSG, alice.user_id), text_send("f1"))
        with pytest.raises(Exception, match="authori"):
            await forged
        m.publish(topics.conv_up(conv, UpKind.TYPING, alice.user_id), b'{"typing": true}', 0)
        m.publish(topics.service_status("persistence", "1"), b'{"online": false}', 0)
        assert await drain(b, 0.5) == []
        assert alice.request("GET", f"/v1/conversations/{conv}/messages").json() == {"messages": []}


async def test_a_non_member_send_is_rejected_not_member(stack: Stack) -> None:
    api = stack.config.api_url
    alice, bob, eve = register(api, "alice"), register(api, "bob"), register(api, "eve")
    conv = alice.conversation(bob)
    async with inbox(eve) as e:
        await e.publish(topics.conv_up(conv, UpKind.MSG, eve.user_id), text_send("n1"))
        ack = await wait_for(e, "/ack", client_msg_id="n1")
        assert ack["status"] == "rejected" and ack["error"]["code"] == "not_member"
    assert alice.request("GET", f"/v1/conversations/{conv}/messages").json()["messages"] == []


async def test_wrong_and_unknown_credentials_are_refused(stack: Stack) -> None:
    user = register(stack.config.api_url, "u")
    device = user.device()
    with pytest.raises(NotAuthorized):
        await device_connection(device, password="not-the-password").connect()
    with pytest.raises(NotAuthorized):
        await device_connection(device, username="d_unknown", client_id="d_unknown").connect()


async def test_a_client_id_cannot_be_taken_over(stack: Stack) -> None:
    api = stack.config.api_url
    victim, thief = register(api, "victim"), register(api, "thief")
    victim_device = victim.device()
    async with device_connection(victim_device) as v:
        with pytest.raises(NotAuthorized):
            await device_connection(
                thief.device(), client_id=victim_device["mqtt"]["client_id"]
            ).connect()
        assert v.connected.is_set()


async def test_revoking_a_device_drops_it_at_once_and_spares_the_others(stack: Stack) -> None:
    user = register(stack.config.api_url, "owner")
    lost, kept = user.device(), user.device()
    async with device_connection(lost) as phone, device_connection(kept, transport="tcp") as tab:
        response = user.request("DELETE", f"/v1/devices/{lost['device_id']}")
        assert response.status_code == 204
        async with asyncio.timeout(5):
            await phone.disconnected.wait()
        with pytest.raises(NotAuthorized):
            await device_connection(lost).connect()
        assert tab.connected.is_set()
        assert (await tab.subscribe([(topics.user_root(user.user_id), 1)])) == [1]
    other = register(stack.config.api_url, "other")
    response = other.request("DELETE", f"/v1/devices/{kept['device_id']}")
    assert response.status_code == 404
