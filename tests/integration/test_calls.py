"""Call signaling on the real broker and database, with the client library
playing both phones (two callsig instances share the work)."""

from __future__ import annotations

import asyncio
import json

import pytest

from bridge import topics
from bridge.mqtt import PublishRefused
from chatclient import CallStateChanged, ChatClient
from tests.integration.call_helpers import Phone, assert_token_for, phone, service_watcher
from tools.stack import Stack

pytestmark = pytest.mark.anyio


async def test_a_call_rings_every_callee_device_is_answered_on_one_and_ends_for_both(
    stack: Stack,
) -> None:
    api = stack.config.api_url
    async with phone(api, "alice") as alice, phone(api, "bob", devices=2) as bob:
        await alice.converse_with(bob)
        call_id = await alice.device.start_call(bob.user_id, "video")

        ringing = await alice.device.wait_for_call_event("ringing", call_id)
        assert (ringing.from_, ringing.to, ringing.media) == (alice.user_id, bob.user_id, "video")
        assert_token_for(ringing.livekit, call_id, alice, stack)
        for device in bob.devices:
            incoming = await device.wait_for_call_event("incoming", call_id)
            assert incoming.from_ == alice.user_id
            assert_token_for(incoming.livekit, call_id, bob, stack)

        answering = bob.devices[1]
        await answering.accept_call(call_id)
        accepted = await alice.device.wait_for_call_event("accepted", call_id)
        assert accepted.device_id == answering.device_id
        assert_token_for(accepted.livekit, call_id, alice, stack)
        for device in bob.devices:  # the other device stops ringing
            event = await device.wait_for_call_event("accepted", call_id)
            assert event.device_id == answering.device_id

        await asyncio.sleep(0.05)  # a measurable duration
        await alice.device.hang_up(call_id)
        for device in (alice.device, *bob.devices):
            ended = await device.wait_for_call_event(call_id=call_id)
            assert (ended.event, ended.reason) == ("ended", "hangup")

        calls = await alice.http.calls()
        record = calls["calls"][0]
        assert record["call_id"] == call_id and record["status"] == "ended"
        assert record["direction"] == "outgoing" and record["peer_id"] == bob.user_id
        assert record["duration_s"] >= 0.05
        assert record["answered_at"] is not None and record["ended_at"] is not None


async def test_decline_from_any_device_stops_every_device(stack: Stack) -> None:
    api = stack.config.api_url
    async with phone(api, "alice") as alice, phone(api, "bob", devices=2) as bob:
        await alice.converse_with(bob)
        call_id = await alice.device.start_call(bob.user_id)
        await bob.devices[0].wait_for_call_event("incoming", call_id)
        await bob.devices[0].decline_call(call_id)
        assert (await alice.device.wait_for_call_event(call_id=call_id)).event == "ringing"
        assert (await alice.device.wait_for_call_event(call_id=call_id)).event == "declined"
        for device in bob.devices:
            assert (await device.wait_for_call_event("declined", call_id)).call_id == call_id


async def test_a_caller_who_hangs_up_before_an_answer_cancels_the_call(stack: Stack) -> None:
    api = stack.config.api_url
    async with phone(api, "alice") as alice, phone(api, "bob", devices=2) as bob:
        await alice.converse_with(bob)
        call_id = await alice.device.start_call(bob.user_id)
        await alice.device.wait_for_call_event("ringing", call_id)
        await alice.device.hang_up(call_id)
        for device in bob.devices:
            await device.wait_for_call_event("cancelled", call_id)
        history = await bob.http.calls()
        assert history["calls"][0]["status"] == "cancelled"
        assert history["missed_unseen"] == 1
        assert await bob.http.mark_calls_seen() == 0
        assert (await bob.http.calls())["calls"][0]["seen"] is True


async def test_a_callee_already_ringing_is_busy_and_a_caller_in_a_call_cannot_call(
    stack: Stack,
) -> None:
    api = stack.config.api_url
    async with (
        phone(api, "alice") as alice,
        phone(api, "bob") as bob,
        phone(api, "carol") as carol,
    ):
        await alice.converse_with(bob)
        await carol.converse_with(bob)
        await alice.converse_with(carol)
        first = await alice.device.start_call(bob.user_id)
        await bob.device.wait_for_call_event("incoming", first)

        second = await carol.device.start_call(bob.user_id)
        busy = await carol.device.wait_for_call_event(call_id=second)
        assert (busy.event, busy.from_, busy.to) == ("busy", carol.user_id, bob.user_id)

        third = await alice.device.start_call(carol.user_id)
        refused = await alice.device.wait_for_call_event("error", third)
        assert refused.reason == "already_in_call"

        # The busy one is in the caller's history; the refused one changed nothing.
        history = await carol.http.calls()
        assert [(c["call_id"], c["status"]) for c in history["calls"]] == [(second, "busy")]
        alice_calls = await alice.http.calls()
        assert [c["call_id"] for c in alice_calls["calls"]] == [first]
        # Bob is still ringing for the first call only.
        await alice.device.hang_up(first)
        await bob.device.wait_for_call_event("cancelled", first)


async def test_glare_ends_as_the_one_call_with_the_smaller_id(stack: Stack) -> None:
    api = stack.config.api_url
    async with phone(api, "alice") as alice, phone(api, "bob") as bob:
        await alice.converse_with(bob)
        smaller, larger = "glare-a-" + alice.user_id[-6:], "glare-b-" + bob.user_id[-6:]
        # Published together: the two callsig instances may take them in any order.
        await asyncio.gather(
            alice.device.start_call(bob.user_id, call_id=smaller),
            bob.device.start_call(alice.user_id, call_id=larger),
        )
        assert (await alice.device.wait_for_call_event("ringing", smaller)).to == bob.user_id
        assert (await bob.device.wait_for_call_event("incoming", smaller)).from_ == alice.user_id
        lost = await bob.device.wait_for_call_event(call_id=larger, timeout=5)
        while lost.event == "ringing":  # it may have rung before the other invite came
            lost = await bob.device.wait_for_call_event(call_id=larger, timeout=5)
        assert (lost.event, lost.reason) == ("ended", "glare")

        for party in (alice, bob):
            assert await _live_call_ids(party) == [smaller]
            history = await party.http.calls()
            statuses = {c["call_id"]: c["status"] for c in history["calls"]}
            assert statuses == {smaller: "ringing", larger: "cancelled"}
            assert history["missed_unseen"] == 0  # glare is not a missed call
        with pytest.raises(TimeoutError):
            await alice.device.wait_for_call_event("busy", timeout=0.5)
        with pytest.raises(TimeoutError):
            await bob.device.wait_for_call_event("busy", timeout=0.5)
        await alice.device.hang_up(smaller)


async def _live_call_ids(party: Phone) -> list[str]:
    """What a device connecting now learns from the retained call state."""
    creds = await party.http.create_device("web")
    async with ChatClient(creds, party.user_id, http=party.http) as fresh:
        event = await fresh.wait_for_event(lambda e: isinstance(e, CallStateChanged))
        assert isinstance(event, CallStateChanged)
        return [call.call_id for call in event.state.calls]


async def test_a_device_connecting_mid_call_learns_of_it_and_not_after_it_ended(
    stack: Stack,
) -> None:
    api = stack.config.api_url
    async with phone(api, "alice") as alice, phone(api, "bob") as bob:
        await alice.converse_with(bob)
        call_id = await alice.device.start_call(bob.user_id, "audio")
        await bob.device.wait_for_call_event("incoming", call_id)

        creds = await bob.http.create_device("android")
        async with ChatClient(creds, bob.user_id, http=bob.http) as late:
            event = await late.wait_for_event(lambda e: isinstance(e, CallStateChanged))
            assert isinstance(event, CallStateChanged)
            [live] = event.state.calls
            assert (live.call_id, live.status, live.from_) == (call_id, "ringing", alice.user_id)
            assert_token_for(live.livekit, call_id, bob, stack)
            # It can answer from what it learned.
            await late.accept_call(call_id)
            accepted = await alice.device.wait_for_call_event("accepted", call_id)
            assert accepted.device_id == late.device_id

        await bob.device.hang_up(call_id)
        await alice.device.wait_for_call_event("ended", call_id)
        assert await _live_call_ids(bob) == []
        assert await _live_call_ids(alice) == []


async def test_refused_actions_get_an_error_to_the_sender_and_change_nothing(
    stack: Stack,
) -> None:
    api = stack.config.api_url
    async with (
        phone(api, "alice") as alice,
        phone(api, "bob") as bob,
        phone(api, "stranger") as stranger,
    ):
        await alice.converse_with(bob)
        me = alice.device

        async def refusal(call_id: str) -> str | None:
            return (await me.wait_for_call_event("error", call_id)).reason

        assert await refusal(await me.start_call(alice.user_id)) == "self_call"
        assert await refusal(await me.start_call("u_nobody")) == "unknown_callee"
        assert await refusal(await me.start_call(stranger.user_id)) == "no_shared_conversation"
        await me.accept_call("no-such-call")
        assert await refusal("no-such-call") == "unknown_call"
        await me.hang_up("no-such-call-2")
        assert await refusal("no-such-call-2") == "unknown_call"

        # Malformed payloads, published raw.
        bad = {
            "bad-1": b"not json",
            "bad-2": json.dumps({"to": bob.user_id, "media": "hologram"}).encode(),
            "bad-3": json.dumps({"to": bob.user_id, "media": "audio", "x": 1}).encode(),
            "bad-4": json.dumps(["to", bob.user_id]).encode(),
        }
        for call_id, payload in bad.items():
            await me.mqtt.publish(
                topics.call_up(call_id, topics.CallAction.INVITE, me.user_id), payload
            )
            assert await refusal(call_id) == "invalid_payload"

        # A real call, then actions that are not the sender's to take.
        call_id = await me.start_call(bob.user_id)
        await me.wait_for_call_event("ringing", call_id)
        await bob.device.wait_for_call_event("incoming", call_id)
        await me.accept_call(call_id)  # the caller cannot answer
        assert await refusal(call_id) == "not_callee"
        await stranger.device.hang_up(call_id)
        outsider = await stranger.device.wait_for_call_event(call_id=call_id)
        assert (outsider.event, outsider.reason, outsider.from_) == (
            "error",
            "not_participant",
            None,
        )
        await bob.device.mqtt.publish(
            topics.call_up(call_id, topics.CallAction.ACCEPT, bob.user_id),
            json.dumps({"device_id": alice.device.device_id}).encode(),
        )
        wrong_device = await bob.device.wait_for_call_event("error", call_id)
        assert wrong_device.reason == "unknown_device"
        # The id is taken: a new invite under it to someone else is refused.
        await me.start_call(stranger.user_id, call_id=call_id)
        assert await refusal(call_id) == "call_id_taken"

        # Nothing changed: still ringing, and it can be answered.
        assert await _live_call_ids(bob) == [call_id]
        await bob.device.accept_call(call_id)
        await me.wait_for_call_event("accepted", call_id)
        await bob.device.hang_up(call_id)
        await me.wait_for_call_event("ended", call_id)
        await bob.device.decline_call(call_id)  # over: nothing left to decline
        assert (await bob.device.wait_for_call_event("error", call_id)).reason == "not_ringing"
        await me.hang_up(call_id)
        assert await refusal(call_id) == "not_live"


async def test_no_one_can_act_in_a_call_as_someone_else(stack: Stack) -> None:
    api = stack.config.api_url
    async with phone(api, "alice") as alice, phone(api, "bob") as bob:
        await alice.converse_with(bob)
        call_id = await alice.device.start_call(bob.user_id)
        await bob.device.wait_for_call_event("incoming", call_id)
        forged = topics.call_up(call_id, topics.CallAction.HANGUP, alice.user_id)
        with pytest.raises(PublishRefused):
            await bob.device.mqtt.publish(forged, b"{}")
        # Still ringing: the broker dropped the forged hangup.
        assert await _live_call_ids(alice) == [call_id]
        await alice.device.hang_up(call_id)


async def test_call_notices_for_the_push_service_are_published(stack: Stack) -> None:
    api = stack.config.api_url
    async with (
        service_watcher(stack, "push-watch") as watcher,
        phone(api, "alice") as alice,
        phone(api, "bob") as bob,
    ):
        await watcher.subscribe([(topics.push_call(bob.user_id), 1)])
        await alice.converse_with(bob)
        call_id = await alice.device.start_call(bob.user_id, "video")
        await alice.device.wait_for_call_event("ringing", call_id)
        await alice.device.hang_up(call_id)
        seen = []
        async with asyncio.timeout(5):
            while len(seen) < 2:
                seen.append(json.loads((await watcher.next_message()).payload))
        assert [n["event"] for n in seen] == ["incoming", "cancelled"]
        assert seen[0]["from"] == alice.user_id and seen[0]["from_name"] == alice.name
        assert seen[0]["media"] == "video" and seen[0]["to"] == bob.user_id
