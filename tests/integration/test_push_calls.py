"""Call pushes through Expo (the Expo double: Expo cannot be reached from the
test machines): at once and high priority for an offline callee, none for a
user online on any device, dead tokens dropped, retries without duplicates."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.integration.call_helpers import Phone, eventually, phone
from tests.integration.test_push_tokens import stored_token
from tools.expo_double import ExpoDouble
from tools.stack import Stack

pytestmark = pytest.mark.anyio


async def messages_to(
    expo: ExpoDouble, token: str, count: int, timeout: float = 5.0
) -> list[dict[str, Any]]:
    await eventually(lambda: len(expo.messages_to(token)) >= count, timeout)
    return expo.messages_to(token)


async def offline_with_token(phone_of: Phone, name: str) -> tuple[str, str]:
    """A device of this user that has a push token and never connects."""
    token = f"ExponentPushToken[{name}{phone_of.user_id[-8:].replace('-', 'x')}]"
    device = await phone_of.http._json(
        "POST", "/v1/devices", json={"platform": "ios", "push_token": token}
    )
    return str(device["device_id"]), token


async def test_an_offline_callee_gets_a_ringing_push_at_once_then_a_missed_one(
    stack: Stack, expo: ExpoDouble
) -> None:
    api = stack.config.api_url
    async with phone(api, "alice") as alice, phone(api, "bob", devices=0) as bob:
        await alice.converse_with(bob)
        _, token = await offline_with_token(bob, "bob")
        call_id = await alice.device.start_call(bob.user_id, "video")
        [ring] = await messages_to(expo, token, 1)
        assert ring["priority"] == "high" and ring["title"] == alice.name
        assert ring["body"] == "Incoming video call" and ring["ttl"] == 45
        assert ring["data"] == {
            "type": "call",
            "event": "incoming",
            "call_id": call_id,
            "from": alice.user_id,
            "media": "video",
        }
        await alice.device.hang_up(call_id)
        stopped = await messages_to(expo, token, 2)
        assert stopped[1]["data"]["event"] == "cancelled"
        assert stopped[1]["body"] == "Missed video call"


async def test_a_user_online_on_any_device_gets_no_push(stack: Stack, expo: ExpoDouble) -> None:
    api = stack.config.api_url
    async with phone(api, "alice") as alice, phone(api, "carol") as carol:
        await alice.converse_with(carol)
        _, token = await offline_with_token(carol, "carol")  # her other device is online
        call_id = await alice.device.start_call(carol.user_id)
        await carol.device.wait_for_call_event("incoming", call_id)
        await alice.device.hang_up(call_id)
        await carol.device.wait_for_call_event("cancelled", call_id)
        await asyncio.sleep(0.5)
        assert expo.messages_to(token) == []


async def test_a_token_expo_does_not_know_is_dropped(stack: Stack, expo: ExpoDouble) -> None:
    api = stack.config.api_url
    async with phone(api, "alice") as alice, phone(api, "bob", devices=0) as bob:
        await alice.converse_with(bob)
        device_id, token = await offline_with_token(bob, "gone")
        expo.unregister(token)
        call_id = await alice.device.start_call(bob.user_id)
        await alice.device.wait_for_call_event("ringing", call_id)
        await eventually(lambda: stored_token(stack, device_id) is None)
        await alice.device.hang_up(call_id)


async def test_expo_failures_are_retried_without_duplicates(stack: Stack, expo: ExpoDouble) -> None:
    api = stack.config.api_url
    async with phone(api, "alice") as alice, phone(api, "bob", devices=0) as bob:
        await alice.converse_with(bob)
        _, token = await offline_with_token(bob, "retry")
        expo.fail_next(times=1, status=429)
        expo.fail_next(times=1, status=503)
        call_id = await alice.device.start_call(bob.user_id)
        [ring] = await messages_to(expo, token, 1, timeout=15)
        assert ring["data"]["call_id"] == call_id
        await asyncio.sleep(1.0)
        assert len(expo.messages_to(token)) == 1  # accepted once, never sent again
        await alice.device.hang_up(call_id)


async def test_a_token_found_dead_in_a_receipt_is_dropped(stack: Stack, expo: ExpoDouble) -> None:
    api = stack.config.api_url
    async with phone(api, "alice") as alice, phone(api, "bob", devices=0) as bob:
        await alice.converse_with(bob)
        device_id, token = await offline_with_token(bob, "receipt")
        expo.receipt_errors(token, "DeviceNotRegistered")
        call_id = await alice.device.start_call(bob.user_id)
        await messages_to(expo, token, 1)  # Expo took it; the receipt says otherwise
        # The receipts job runs every second in the test stack.
        await eventually(lambda: stored_token(stack, device_id) is None, timeout=10)
        await alice.device.hang_up(call_id)
