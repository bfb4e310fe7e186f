"""Presence: devices announce themselves, the tracker tells conversation peers
(and no one else), debounces flapping connections, and survives a kill -9."""

from __future__ import annotations

import asyncio
import json

import pytest

from bridge import topics
from bridge.mqtt import PublishRefused
from chatclient import ApiError, ChatClient, PresenceChanged
from chatclient.events import Event
from tests.integration.call_helpers import Phone, phone
from tools.stack import Stack

pytestmark = pytest.mark.anyio

DEBOUNCE = 2.0  # the shared stack's PRESENCE_OFFLINE_DEBOUNCE_SECONDS (a reconnect under load fits)


def about(user: Phone, online: bool | None = None) -> object:
    def matches(event: Event) -> bool:
        return (
            isinstance(event, PresenceChanged)
            and event.event.user_id == user.user_id
            and (online is None or event.event.online is online)
        )

    return matches


async def presence_of(viewer: Phone, user: Phone) -> dict[str, object]:
    return await viewer.http.presence(user.user_id)


async def test_peers_see_a_user_come_online_and_go_offline_and_strangers_do_not(
    stack: Stack,
) -> None:
    api = stack.config.api_url
    async with (
        phone(api, "alice") as alice,
        phone(api, "bob", devices=0) as bob,
        phone(api, "stranger") as stranger,
    ):
        await alice.converse_with(bob)
        creds = await bob.http.create_device("android")
        async with ChatClient(creds, bob.user_id, http=bob.http) as bobs_phone:
            came = await alice.device.wait_for_event(about(bob, online=True))
            assert isinstance(came, PresenceChanged) and came.event.last_seen is None
            assert (await presence_of(alice, bob))["online"] is True
            assert (await presence_of(bob, bob))["online"] is True
            with pytest.raises(ApiError) as refused:
                await stranger.http.presence(bob.user_id)
            assert refused.value.status == 404
            assert bobs_phone.connected
        left = await alice.device.wait_for_event(about(bob, online=False), timeout=DEBOUNCE + 5)
        assert isinstance(left, PresenceChanged) and left.event.last_seen is not None
        seen = await presence_of(alice, bob)
        assert seen["online"] is False and seen["last_seen"] == left.event.last_seen
        with pytest.raises(TimeoutError):
            await stranger.device.wait_for_event(about(bob), timeout=0.5)


async def eventually_online(user: Phone) -> None:
    """The tracker has recorded the user's device (and told the peers it had)."""
    for _ in range(100):
        if (await user.http.presence(user.user_id))["online"] is True:
            await asyncio.sleep(0.2)  # its peers were read right after the record
            return
        await asyncio.sleep(0.05)
    raise TimeoutError("the tracker never recorded the device")


async def test_a_flapping_connection_tells_peers_nothing(stack: Stack) -> None:
    api = stack.config.api_url
    async with phone(api, "alice") as alice, phone(api, "bob") as bob:
        # Bob's device is online (and the tracker has told his peers, none yet)
        # before the conversation exists: no event for it.
        await eventually_online(bob)
        await alice.converse_with(bob)
        assert (await presence_of(alice, bob))["online"] is True
        bob.device.drop()  # the network goes; the broker publishes the Last Will
        await bob.device.wait_reconnected(10)
        with pytest.raises(TimeoutError):
            await alice.device.wait_for_event(about(bob), timeout=DEBOUNCE + 1.5)
        assert (await presence_of(alice, bob))["online"] is True


async def test_a_user_is_online_while_any_device_is(stack: Stack) -> None:
    api = stack.config.api_url
    async with phone(api, "alice") as alice, phone(api, "bob", devices=2) as bob:
        await alice.converse_with(bob)
        await bob.devices[0].close()
        await asyncio.sleep(DEBOUNCE + 0.5)
        assert (await presence_of(alice, bob))["online"] is True
        with pytest.raises(TimeoutError):
            await alice.device.wait_for_event(about(bob, online=False), timeout=0.3)


async def test_presence_cannot_be_forged_and_bad_announcements_change_nothing(
    stack: Stack,
) -> None:
    api = stack.config.api_url
    async with phone(api, "alice") as alice, phone(api, "bob") as bob:
        await alice.converse_with(bob)
        # As someone else: the broker refuses it.
        forged = topics.presence(alice.user_id, alice.device.device_id)
        with pytest.raises(PublishRefused):
            await bob.device.mqtt.publish(forged, json.dumps({"online": False}).encode())
        # Own user id, but a device that is not Bob's, or a malformed payload: ignored.
        not_his = topics.presence(bob.user_id, alice.device.device_id)
        await bob.device.mqtt.publish(not_his, json.dumps({"online": False}).encode())
        own = topics.presence(bob.user_id, bob.device.device_id)
        await bob.device.mqtt.publish(own, b'{"online": "no"}')
        await asyncio.sleep(DEBOUNCE + 0.5)
        assert (await presence_of(bob, alice))["online"] is True
        assert (await presence_of(alice, bob))["online"] is True


async def test_the_tracker_catches_up_after_a_kill(stack: Stack) -> None:
    api = stack.config.api_url
    async with phone(api, "alice") as alice, phone(api, "bob", devices=0) as bob:
        await alice.converse_with(bob)
        creds = await bob.http.create_device("ios")
        async with ChatClient(creds, bob.user_id, http=bob.http):
            await alice.device.wait_for_event(about(bob, online=True))
            await asyncio.to_thread(stack.kill, "presence-1")
        # Bob left while no tracker ran; the retained offline tells the next one.
        await asyncio.to_thread(stack.start_service, "presence", "services.presence", "1")
        left = await alice.device.wait_for_event(about(bob, online=False), timeout=DEBOUNCE + 10)
        assert isinstance(left, PresenceChanged)
        assert (await presence_of(alice, bob))["online"] is False
