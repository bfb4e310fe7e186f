"""Calls and LiveKit: signed webhooks drive call state, rooms are closed when a
call ends, recordings follow egress. LiveKit is the Twirp double
(tools/livekit_double.py): no LiveKit server can run on the test machines."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator

import httpx
import pytest
from livekit.protocol.webhook import WebhookEvent

from tests.integration.call_helpers import Phone, eventually, phone
from tests.integration.test_calls import _live_call_ids
from tools.livekit_double import LiveKitDouble, sign_webhook
from tools.stack import Stack

pytestmark = pytest.mark.anyio


def post_webhook(stack: Stack, body: bytes, authorization: str | None) -> httpx.Response:
    headers = {"Content-Type": "application/webhook+json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    return httpx.post(
        f"{stack.config.api_url}/v1/livekit/webhook", content=body, headers=headers, timeout=10
    )


def deliver(stack: Stack, livekit: LiveKitDouble, event: WebhookEvent) -> None:
    response = post_webhook(stack, *livekit.signed_webhook(event))
    assert response.status_code == 200, response.text


@contextlib.asynccontextmanager
async def answered_call(
    stack: Stack, media: str = "audio"
) -> AsyncIterator[tuple[Phone, Phone, str]]:
    api = stack.config.api_url
    async with phone(api, "alice") as alice, phone(api, "bob") as bob:
        await alice.converse_with(bob)
        call_id = await alice.device.start_call(bob.user_id, media)  # type: ignore[arg-type]
        await bob.device.wait_for_call_event("incoming", call_id)
        await bob.device.accept_call(call_id)
        await alice.device.wait_for_call_event("accepted", call_id)
        yield alice, bob, call_id


def join(livekit: LiveKitDouble, call_id: str, *parties: Phone) -> list[WebhookEvent]:
    for party in parties:
        livekit.add_participant(call_id, party.user_id, auto_create=True)
    return [
        livekit.make_event("participant_joined", call_id, participant_identity=party.user_id)
        for party in parties
    ]


async def test_webhooks_that_do_not_verify_are_refused_and_change_nothing(
    stack: Stack, livekit: LiveKitDouble
) -> None:
    async with answered_call(stack) as (alice, bob, call_id):
        finished = livekit.make_event("room_finished", call_id)
        body, signature = livekit.signed_webhook(finished)
        assert post_webhook(stack, body, None).status_code == 401
        tampered = body.replace(call_id.encode(), b"another-room")
        assert post_webhook(stack, tampered, signature).status_code == 401
        _, forged = sign_webhook(finished, livekit.api_key, secrets.token_urlsafe(32))
        refused = post_webhook(stack, body, forged)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "unauthorized"
        assert post_webhook(stack, b"\xff\xfe", signature).status_code in (401, 422)

        assert await _live_call_ids(alice) == [call_id]  # still on
        deliver(stack, livekit, finished)
        for party in (alice, bob):
            ended = await party.device.wait_for_call_event("ended", call_id)
            assert ended.reason == "room_finished"


async def test_the_room_is_deleted_through_room_service_when_a_call_ends(
    stack: Stack, livekit: LiveKitDouble
) -> None:
    async with answered_call(stack, "video") as (alice, bob, call_id):
        for event in join(livekit, call_id, alice, bob):
            deliver(stack, livekit, event)
        await bob.device.hang_up(call_id)
        await alice.device.wait_for_call_event("ended", call_id)
        await eventually(lambda: call_id not in livekit.rooms)
        deleted = [r.room for r in livekit.calls_to("DeleteRoom")]
        assert deleted.count(call_id) == 1


async def test_both_parties_leaving_ends_the_call_and_a_replayed_webhook_is_ignored(
    stack: Stack, livekit: LiveKitDouble
) -> None:
    async with answered_call(stack) as (alice, bob, call_id):
        for event in join(livekit, call_id, alice, bob):
            deliver(stack, livekit, event)
        alice_left = livekit.make_event(
            "participant_left", call_id, participant_identity=alice.user_id
        )
        deliver(stack, livekit, alice_left)
        deliver(stack, livekit, *join(livekit, call_id, alice))  # back after a network change
        deliver(stack, livekit, alice_left)  # LiveKit delivers the old event again
        bob_left = livekit.make_event("participant_left", call_id, participant_identity=bob.user_id)
        deliver(stack, livekit, bob_left)
        # Alice is in the room: the replay was ignored, so the call goes on.
        with pytest.raises(TimeoutError):
            await alice.device.wait_for_call_event("ended", call_id, timeout=1)
        alice_left_again = livekit.make_event(
            "participant_left", call_id, participant_identity=alice.user_id
        )
        deliver(stack, livekit, alice_left_again)
        for party in (alice, bob):
            ended = await party.device.wait_for_call_event("ended", call_id)
            assert ended.reason == "left"


async def test_a_party_records_the_call_and_the_recording_is_listed_with_it(
    stack: Stack, livekit: LiveKitDouble
) -> None:
    async with answered_call(stack, "audio") as (alice, bob, call_id):
        for event in join(livekit, call_id, alice, bob):
            deliver(stack, livekit, event)
        await bob.device.stop_recording(call_id)
        refused = await bob.device.wait_for_call_event("error", call_id)
        assert refused.reason == "not_recording"

        await alice.device.start_recording(call_id)
        for party in (alice, bob):
            requested = await party.device.wait_for_call_event("recording", call_id)
            assert requested.recording is not None and requested.recording.status == "requested"
            starting = await party.device.wait_for_call_event("recording", call_id)
            assert starting.recording is not None and starting.recording.status == "starting"
        [request] = [
            r for r in livekit.calls_to("StartRoomCompositeEgress") if r.room_name == call_id
        ]
        assert request.audio_only is True
        [egress] = [e for e in livekit.egresses.values() if e.room_name == call_id]
        deliver(stack, livekit, livekit.make_event("egress_started", call_id, egress=egress))
        active = await alice.device.wait_for_call_event("recording", call_id)
        assert active.recording is not None and active.recording.status == "active"

        await alice.device.start_recording(call_id)  # once is enough
        assert (
            await alice.device.wait_for_call_event("error", call_id)
        ).reason == "already_recording"

        await bob.device.hang_up(call_id)  # ending the call stops the recording
        await alice.device.wait_for_call_event("ended", call_id)
        await eventually(
            lambda: any(s.egress_id == egress.egress_id for s in livekit.calls_to("StopEgress"))
        )
        done = livekit.egresses[egress.egress_id]
        deliver(stack, livekit, livekit.make_event("egress_ended", call_id, egress=done))
        complete = await alice.device.wait_for_call_event("recording", call_id)
        assert complete.recording is not None and complete.recording.status == "complete"
        history = await alice.http.calls()
        record = next(c for c in history["calls"] if c["call_id"] == call_id)
        assert record["recording"]["status"] == "complete"
        assert record["recording"]["location"]


async def test_recording_is_refused_before_an_answer(stack: Stack) -> None:
    api = stack.config.api_url
    async with phone(api, "alice") as alice, phone(api, "bob") as bob:
        await alice.converse_with(bob)
        call_id = await alice.device.start_call(bob.user_id)
        await alice.device.wait_for_call_event("ringing", call_id)
        await alice.device.start_recording(call_id)
        assert (await alice.device.wait_for_call_event("error", call_id)).reason == "not_active"
        await alice.device.hang_up(call_id)
