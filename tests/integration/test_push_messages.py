"""Message pushes through Expo (its double: Expo cannot be reached from the test
machines): only to members with no device online, one per burst, never to the
sender, not for muted conversations, and at most so many a minute."""

from __future__ import annotations

import asyncio
import contextlib
import secrets

import pytest

from bridge import topics
from bridge.wire.messaging import PushCandidate, SendMessage
from chatclient import ApiError, ChatClient
from tests.integration.call_helpers import Phone, phone, service_watcher
from tests.integration.test_presence import eventually_online
from tests.integration.test_push_calls import messages_to, offline_with_token
from tools.expo_double import ExpoDouble
from tools.stack import Stack

pytestmark = pytest.mark.anyio

WINDOW = 1.0  # PUSH_MESSAGE_WINDOW_SECONDS of the shared stack (the default)


async def send_texts(sender: Phone, conv_id: str, *texts: str) -> None:
    for text in texts:
        body = SendMessage(client_msg_id=secrets.token_hex(6), kind="text", text=text)
        status, _ = await sender.http.send(conv_id, body)
        assert status == 201


async def quiet(expo: ExpoDouble, token: str, expected: int) -> None:
    """After the window has surely closed, still exactly `expected` pushes."""
    await asyncio.sleep(WINDOW + 1.0)
    assert len(expo.messages_to(token)) == expected


async def test_an_offline_member_gets_one_push_for_a_burst(stack: Stack, expo: ExpoDouble) -> None:
    api = stack.config.api_url
    async with phone(api, "alice") as alice, phone(api, "bob", devices=0) as bob:
        conv = await alice.converse_with(bob)
        _, token = await offline_with_token(bob, "burst")
        await send_texts(alice, conv, "is it still for sale?")
        [single] = await messages_to(expo, token, 1)
        assert single["title"] == alice.name and single["body"] == "is it still for sale?"
        assert single["data"] == {"type": "message", "conv_id": conv, "seq": 1, "count": 1}
        await send_texts(alice, conv, "hello?", "I can pick it up today", "cash", "ok?")
        pushes = await messages_to(expo, token, 2)
        assert pushes[1]["body"] == "4 new messages"
        assert pushes[1]["data"] == {"type": "message", "conv_id": conv, "seq": 5, "count": 4}
        await quiet(expo, token, 2)


async def test_no_push_to_the_online_or_to_the_sender(stack: Stack, expo: ExpoDouble) -> None:
    api = stack.config.api_url
    async with (
        phone(api, "alice", devices=0) as alice,
        phone(api, "bob") as bob,
    ):
        conv = await alice.converse_with(bob)
        _, alice_token = await offline_with_token(alice, "sender")
        _, bob_token = await offline_with_token(bob, "online")  # his other device is online
        await send_texts(alice, conv, "from the web, no app open")
        await bob.device.wait_for_message(lambda m: m.conv_id == conv)
        await quiet(expo, bob_token, 0)
        assert expo.messages_to(alice_token) == []


async def test_the_push_service_hears_only_of_members_away(stack: Stack) -> None:
    """Persistence names the members away (no device online, a push token, not
    muted) when it stores a message, over MQTT and over HTTP alike: a message
    among online users gives the push service nothing to do."""
    api = stack.config.api_url
    async with (
        phone(api, "alice") as alice,
        phone(api, "bob") as bob,
        phone(api, "carol", devices=0) as carol,
        phone(api, "dave", devices=0) as dave,
        service_watcher(stack, f"push-watch-{secrets.token_hex(3)}") as watcher,
    ):
        await watcher.subscribe([(topics.push_message(), 1)])
        await offline_with_token(bob, "here")  # his other device is online
        await offline_with_token(carol, "away")
        group = await alice.converse_with(bob, carol, dave)  # dave has no token
        pair = await alice.converse_with(bob)
        await eventually_online(bob)
        await alice.device.send_text(pair, "both online, over MQTT")
        await send_texts(alice, pair, "both online, over HTTP")
        await alice.device.send_text(group, "to the group, over MQTT")
        await send_texts(alice, group, "to the group, over HTTP")
        notices: list[PushCandidate] = []
        with contextlib.suppress(TimeoutError):
            while True:
                candidate = PushCandidate.model_validate_json(
                    (await watcher.next_message(2.0)).payload
                )
                if candidate.message.conv_id in (group, pair):
                    notices.append(candidate)
        assert [(n.message.conv_id, n.recipients) for n in notices] == [
            (group, [carol.user_id]),
            (group, [carol.user_id]),
        ]


async def test_a_member_who_goes_offline_gets_pushes_from_then_on(
    stack: Stack, expo: ExpoDouble
) -> None:
    api = stack.config.api_url
    async with phone(api, "alice") as alice, phone(api, "bob", devices=0) as bob:
        conv = await alice.converse_with(bob)
        _, token = await offline_with_token(bob, "leaves")
        creds = await bob.http.create_device("android")
        async with ChatClient(creds, bob.user_id, http=bob.http) as bobs_phone:
            await send_texts(alice, conv, "while you look")
            await bobs_phone.wait_for_message(lambda m: m.conv_id == conv)
        await send_texts(alice, conv, "after you left")
        [push] = await messages_to(expo, token, 1)
        assert push["body"] == "after you left"
        await quiet(expo, token, 1)


async def test_a_muted_conversation_pushes_nothing(stack: Stack, expo: ExpoDouble) -> None:
    api = stack.config.api_url
    async with phone(api, "alice") as alice, phone(api, "bob", devices=0) as bob:
        conv = await alice.converse_with(bob)
        _, token = await offline_with_token(bob, "muted")
        await bob.http.mute(conv)
        await send_texts(alice, conv, "shh")
        await quiet(expo, token, 0)
        await bob.http.mute(conv, False)
        await send_texts(alice, conv, "loud again")
        assert [p["body"] for p in await messages_to(expo, token, 1)] == ["loud again"]


async def test_pushes_to_one_user_are_limited_per_minute(stack: Stack, expo: ExpoDouble) -> None:
    api = stack.config.api_url
    limit = 20  # PUSH_USER_PER_MINUTE (the default)
    async with phone(api, "bob", devices=0) as bob:
        _, token = await offline_with_token(bob, "limited")
        # A few sellers at a time: 23 sign-ups at once (password hashing) can
        # outlast the client's timeout on a loaded machine; a few at a time
        # still send all within the minute.
        gate = asyncio.Semaphore(4)
        async with asyncio.TaskGroup() as group:
            for index in range(limit + 3):
                group.create_task(_one_message_from_a_new_seller(api, bob, index, gate))
        await messages_to(expo, token, limit)
        await quiet(expo, token, limit)


async def _one_message_from_a_new_seller(
    api: str, bob: Phone, index: int, gate: asyncio.Semaphore
) -> None:
    async with gate, phone(api, f"seller{index}", devices=0) as seller:
        conv = await seller.converse_with(bob)
        await send_texts(seller, conv, f"offer {index}")


async def test_muting_needs_membership(stack: Stack) -> None:
    api = stack.config.api_url
    async with phone(api, "alice", devices=0) as alice, phone(api, "eve", devices=0) as eve:
        conv = await alice.converse_with(eve)
        async with phone(api, "mallory", devices=0) as mallory:
            with pytest.raises(ApiError) as refused:
                await mallory.http.mute(conv)
            assert (refused.value.status, refused.value.code) == (403, "not_member")
            with pytest.raises(ApiError) as unknown:
                await mallory.http.mute("no-such-conversation")
            assert unknown.value.status == 404
