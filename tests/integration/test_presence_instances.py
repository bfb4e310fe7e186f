"""Presence with two tracker instances (the shared stack runs two): each sees
every announcement, yet each transition is told once to the peers and once to
the support router, and a tracker killed during the offline debounce leaves
the telling to the other, which the killed one does not repeat on its return."""

from __future__ import annotations

import asyncio
import json
import secrets

import pytest

from bridge import topics
from chatclient import ChatClient
from tests.integration.call_helpers import phone, service_watcher
from tests.integration.mqtt_helpers import drain
from tests.integration.test_presence import DEBOUNCE, about
from tools.stack import Stack

pytestmark = pytest.mark.anyio

# Long enough for a second tracker's duplicate to arrive, had it sent one.
DUPLICATE_WAIT = 1.5


async def test_each_transition_is_told_once_to_peers_and_to_the_router(stack: Stack) -> None:
    api = stack.config.api_url
    async with (
        phone(api, "alice") as alice,
        phone(api, "bob", devices=0) as bob,
        service_watcher(stack, f"watch-{secrets.token_hex(4)}") as router_view,
    ):
        await router_view.subscribe([(topics.presence_changed(bob.user_id), 1)])
        await alice.converse_with(bob)
        creds = await bob.http.create_device("android")
        async with ChatClient(creds, bob.user_id, http=bob.http):
            await alice.device.wait_for_event(about(bob, online=True))
            with pytest.raises(TimeoutError):
                await alice.device.wait_for_event(about(bob), timeout=DUPLICATE_WAIT)
            came = await drain(router_view, quiet=DUPLICATE_WAIT)
            assert [json.loads(m.payload)["online"] for m in came] == [True]
        await alice.device.wait_for_event(about(bob, online=False), timeout=DEBOUNCE + 5)
        with pytest.raises(TimeoutError):
            await alice.device.wait_for_event(about(bob), timeout=DUPLICATE_WAIT)
        left = await drain(router_view, quiet=DUPLICATE_WAIT)
        assert [json.loads(m.payload)["online"] for m in left] == [False]


async def test_a_tracker_killed_during_the_debounce_leaves_the_telling_to_the_other(
    stack: Stack,
) -> None:
    api = stack.config.api_url
    async with phone(api, "alice") as alice, phone(api, "bob", devices=0) as bob:
        await alice.converse_with(bob)
        creds = await bob.http.create_device("ios")
        async with ChatClient(creds, bob.user_id, http=bob.http):
            await alice.device.wait_for_event(about(bob, online=True))
        # Bob has left; both trackers wait out the debounce, and one dies.
        await asyncio.to_thread(stack.kill, "presence-1")
        try:
            await alice.device.wait_for_event(about(bob, online=False), DEBOUNCE + 5)
        finally:
            await asyncio.to_thread(stack.start_service, "presence", "services.presence", "1")
        assert (await alice.http.presence(bob.user_id))["online"] is False
        # The restarted tracker replays Bob's retained offline: already told.
        with pytest.raises(TimeoutError):
            await alice.device.wait_for_event(about(bob), timeout=DUPLICATE_WAIT)
