"""The messaging path over MQTT: delivery to every member, acks, receipts, typing,
and bad input answered with a rejected ack while the service keeps running."""

from __future__ import annotations

import asyncio
import json

import aiomqtt
import pytest

from bridge import topics
from bridge.topics import UpKind
from tests.factories import register
from tests.integration.mqtt_helpers import device_connection, drain, inbox, text_send, wait_for
from tools.stack import Stack

pytestmark = pytest.mark.anyio


async def test_every_member_and_the_senders_other_devices_get_it_once(stack: Stack) -> None:
    api = stack.config.api_url
    alice, bob, carol = register(api, "alice"), register(api, "bob"), register(api, "carol")
    conv = alice.conversation(bob, carol)
    phone, tablet = alice.device(), alice.device()
    async with (
        device_connection(phone) as a1,
        device_connection(tablet, transport="tcp") as a2,
        device_connection(bob.device()) as b,
        device_connection(carol.device(), transport="tcp") as c,
    ):
        for conn, user in ((a1, alice), (a2, alice), (b, bob), (c, carol)):
            assert await conn.subscribe([(topics.user_root(user.user_id), 1)]) == [1]
        await a1.publish(
            topics.conv_up(conv, UpKind.MSG, alice.user_id),
            text_send("k1", "Is it still for sale?"),
        )
        for conn in (a1, a2, b, c):
            got = await wait_for(conn, f"/conv/{conv}/msg")
            assert got["seq"] == 1 and got["sender_id"] == alice.user_id
            assert got["text"] == "Is it still for sale?" and got["client_msg_id"] == "k1"
            assert set(got) == {
                "id",
                "conv_id",
                "seq",
                "sender_id",
                "kind",
                "text",
                "media",
                "reply_to",
                "client_msg_id",
                "created_at",
            }
        acks = [m for m in await drain(a1) if m.topic == topics.user_ack(alice.user_id)]
        assert len(acks) == 1
        assert json.loads(acks[0].payload)["status"] == "stored"
        # The sender's other device shares the user's topic: it may see that one
        # ack too, and nothing more.
        assert len([m for m in await drain(a2) if m.topic.endswith("/ack")]) <= 1


async def test_resend_is_a_duplicate_with_the_original(stack: Stack) -> None:
    api = stack.config.api_url
    alice, bob = register(api, "alice"), register(api, "bob")
    conv = alice.conversation(bob)
    async with inbox(alice) as a, inbox(bob) as b:
        up = topics.conv_up(conv, UpKind.MSG, alice.user_id)
        await a.publish(up, text_send("same", "first body"))
        first = await wait_for(a, "/ack", client_msg_id="same")
        await a.publish(up, text_send("same", "second body"))
        second = await wait_for(a, "/ack", client_msg_id="same")
        assert first["status"] == "stored" and second["status"] == "duplicate"
        assert (second["id"], second["seq"]) == (first["id"], first["seq"])
        delivered = [m for m in await drain(b) if m.topic.endswith("/msg")]
        assert len(delivered) == 1 and json.loads(delivered[0].payload)["text"] == "first body"


BAD_PAYLOADS = [
    (b"{not json", None, "invalid_payload"),
    (b"\xff\xfe\x00garbage", None, "invalid_payload"),
    (b"[1, 2]", None, "invalid_payload"),
    (b'{"client_msg_id": "b1", "kind": "text", "text": "x", "extra": 1}', "b1", "invalid_payload"),
    (b'{"client_msg_id": "b2", "kind": "text", "text": 5}', "b2", "invalid_payload"),
    (b'{"client_msg_id": "b3", "kind": "text", "text": ""}', "b3", "invalid_payload"),
    (b'{"client_msg_id": "b4", "kind": "video", "text": "x"}', "b4", "invalid_payload"),
    (b'{"client_msg_id": "bad/id", "kind": "text", "text": "x"}', None, "invalid_payload"),
    (b'{"client_msg_id": "b5", "kind": "image"}', "b5", "invalid_payload"),
    (b'{"client_msg_id": "b6", "kind": "image", "media_id": "f_nope"}', "b6", "unknown_media"),
    (
        json.dumps({"client_msg_id": "b7", "kind": "text", "text": "x" * 4001}).encode(),
        "b7",
        "too_large",
    ),
    (b'{"client_msg_id": "b8", "kind": "text", "text": "\\ud800"}', "b8", "invalid_payload"),
    (b'{"client_msg_id": "b9", "kind": "text", "text": "a\\u0000b"}', "b9", "invalid_payload"),
    (b"x" * (70 * 1024), None, "too_large"),
]


async def test_bad_input_gets_a_rejected_ack_and_changes_nothing(stack: Stack) -> None:
    api = stack.config.api_url
    alice, bob = register(api, "alice"), register(api, "bob")
    conv = alice.conversation(bob)
    async with inbox(alice) as a:
        up = topics.conv_up(conv, UpKind.MSG, alice.user_id)
        for payload, cmid, code in BAD_PAYLOADS:
            await a.publish(up, payload)
            ack = await wait_for(a, "/ack")
            assert (ack["status"], ack["client_msg_id"], ack["conv_id"]) == (
                "rejected",
                cmid,
                conv,
            ), payload[:60]
            assert ack["error"]["code"] == code, payload[:60]
        # An unknown conversation, and an id that is not an id.
        await a.publish(topics.conv_up("c_nothere", UpKind.MSG, alice.user_id), text_send("u1"))
        assert (await wait_for(a, "/ack", client_msg_id="u1"))["error"]["code"] in (
            "unknown_conversation",
            "not_member",
        )
        # The service is still there and stores a good message as seq 1.
        await a.publish(up, text_send("good"))
        assert (await wait_for(a, "/ack", client_msg_id="good"))["seq"] == 1
    assert len(alice.request("GET", f"/v1/conversations/{conv}/messages").json()["messages"]) == 1


async def test_read_receipts_never_move_backwards_and_are_clamped(stack: Stack) -> None:
    api = stack.config.api_url
    alice, bob = register(api, "alice"), register(api, "bob")
    conv = alice.conversation(bob)
    async with inbox(alice) as a, inbox(bob) as b:
        for i in range(3):
            await a.publish(topics.conv_up(conv, UpKind.MSG, alice.user_id), text_send(f"r{i}"))
            await wait_for(a, "/ack", client_msg_id=f"r{i}")
        read = topics.conv_up(conv, UpKind.READ, bob.user_id)
        await b.publish(read, b'{"seq": 2}')
        assert await wait_for(a, f"/conv/{conv}/read") == {"user_id": bob.user_id, "seq": 2}
        assert await wait_for(b, f"/conv/{conv}/read") == {"user_id": bob.user_id, "seq": 2}
        await b.publish(read, b'{"seq": 1}')  # backwards: ignored
        await b.publish(read, b'{"seq": "3"}')  # wrong type: ignored
        await b.publish(read, b'{"seq": 99}')  # clamped to the last message
        assert await wait_for(a, f"/conv/{conv}/read") == {"user_id": bob.user_id, "seq": 3}
    listed = bob.request("GET", "/v1/conversations").json()["conversations"]
    assert next(c for c in listed if c["conv_id"] == conv)["unread_count"] == 0


async def test_typing_reaches_the_others_only_and_is_not_stored(stack: Stack) -> None:
    api = stack.config.api_url
    alice, bob, eve = register(api, "alice"), register(api, "bob"), register(api, "eve")
    conv = alice.conversation(bob)
    async with inbox(alice) as a, inbox(bob) as b:
        a.publish(topics.conv_up(conv, UpKind.TYPING, alice.user_id), b'{"typing": true}', 0)
        assert await wait_for(b, f"/conv/{conv}/typing") == {
            "user_id": alice.user_id,
            "typing": True,
        }
        assert [m for m in await drain(a) if "/typing" in m.topic] == []
    async with device_connection(eve.device()) as e:
        e.publish(topics.conv_up(conv, UpKind.TYPING, eve.user_id), b'{"typing": true}', 0)
    assert alice.request("GET", f"/v1/conversations/{conv}/messages").json()["messages"] == []


async def test_an_http_send_is_delivered_over_mqtt(stack: Stack) -> None:
    api = stack.config.api_url
    alice, bob = register(api, "alice"), register(api, "bob")
    conv = alice.conversation(bob)
    async with inbox(bob) as b, inbox(alice) as a:
        response = alice.request(
            "POST",
            f"/v1/conversations/{conv}/messages",
            json={"client_msg_id": "h1", "kind": "text", "text": "via http"},
        )
        assert response.status_code == 201
        got = await wait_for(b, f"/conv/{conv}/msg", client_msg_id="h1")
        assert got == response.json()
        mine = await wait_for(a, f"/conv/{conv}/msg", client_msg_id="h1")
        assert mine["seq"] == 1
        # The HTTP response is the ack: no MQTT ack for it.
        assert [m for m in await drain(a) if m.topic.endswith("/ack")] == []


async def test_an_mqtt_3_1_1_client_over_websocket_works_too(stack: Stack) -> None:
    """The contract supports MQTT 3.1.1: an independent client (aiomqtt) speaking
    3.1.1 over WebSocket sends and receives with a device's credentials."""
    api = stack.config.api_url
    alice, bob = register(api, "alice"), register(api, "bob")
    conv = alice.conversation(bob)
    device = alice.device()["mqtt"]
    client = aiomqtt.Client(
        "127.0.0.1",
        stack.config.ws_port,
        transport="websockets",
        websocket_path="/mqtt",
        identifier=device["client_id"],
        username=device["username"],
        password=device["password"],
        protocol=aiomqtt.ProtocolVersion.V311,
        clean_session=False,
    )
    async with client:
        await client.subscribe(topics.user_root(alice.user_id), qos=1)
        await client.publish(
            topics.conv_up(conv, UpKind.MSG, alice.user_id),
            text_send("v311", "from a 3.1.1 client"),
            qos=1,
        )
        received: dict[str, dict[str, object]] = {}
        async with asyncio.timeout(5):
            async for message in client.messages:
                received[message.topic.value.rsplit("/", 1)[-1]] = json.loads(message.payload)  # type: ignore[arg-type]
                if {"msg", "ack"} <= set(received):
                    break
    assert received["ack"]["status"] == "stored"
    assert received["msg"]["text"] == "from a 3.1.1 client"
