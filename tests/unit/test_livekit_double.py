"""The LiveKit test double, driven by the real `livekit-api` client over HTTP.

Every RPC test goes through `api.LiveKitAPI`, so these tests also pin down the wire
behaviour the project's code will see: what the client raises, with which code and status.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta

import anyio
import anyio.to_thread
import pytest
from livekit import api
from livekit.protocol.egress import (
    EgressInfo,
    EgressStatus,
    EncodedFileOutput,
    ListEgressRequest,
    RoomCompositeEgressRequest,
    StopEgressRequest,
)
from livekit.protocol.room import (
    CreateRoomRequest,
    DeleteRoomRequest,
    ListParticipantsRequest,
    ListRoomsRequest,
    RoomParticipantIdentity,
)

from tools.livekit_double import WEBHOOK_CONTENT_TYPE, LiveKitDouble

KEY = "APItestkey"
SECRET = "a-test-secret-that-is-at-least-32-characters"


@pytest.fixture
def livekit() -> Iterator[LiveKitDouble]:
    with LiveKitDouble(KEY, SECRET) as double:
        yield double


@asynccontextmanager
async def client(
    double: LiveKitDouble, secret: str = SECRET, *, token: str | None = None
) -> AsyncIterator[api.LiveKitAPI]:
    """The real client; aiohttp wants its session created, and closed, on the loop."""
    if token is not None:
        lkapi = api.LiveKitAPI.with_token(token, double.url)
    else:
        lkapi = api.LiveKitAPI(double.url, KEY, secret)
    try:
        yield lkapi
    finally:
        await lkapi.aclose()


def token_with(grants: api.VideoGrants) -> str:
    return api.AccessToken(KEY, SECRET).with_grants(grants).to_jwt()


def recording_request(room: str) -> RoomCompositeEgressRequest:
    return RoomCompositeEgressRequest(
        room_name=room,
        audio_only=True,
        file_outputs=[EncodedFileOutput(filepath="calls/{room_name}.ogg")],
    )


# ---------------------------------------------------------------- rooms


@pytest.mark.anyio
async def test_create_list_delete_room(livekit: LiveKitDouble) -> None:
    async with client(livekit) as lkapi:
        created = await lkapi.room.create_room(
            CreateRoomRequest(name="call-1", empty_timeout=60, metadata='{"conv": 7}')
        )
        await lkapi.room.create_room(CreateRoomRequest(name="call-2"))
        listed = await lkapi.room.list_rooms(ListRoomsRequest())
        only_first = await lkapi.room.list_rooms(ListRoomsRequest(names=["call-1"]))
        await lkapi.room.delete_room(DeleteRoomRequest(room="call-1"))
        after = await lkapi.room.list_rooms(ListRoomsRequest())

    assert created.name == "call-1"
    assert created.sid.startswith("RM_")
    assert created.empty_timeout == 60
    assert created.departure_timeout == 20  # LiveKit's default when the request leaves 0
    assert created.metadata == '{"conv": 7}'
    assert sorted(room.name for room in listed.rooms) == ["call-1", "call-2"]
    assert [room.sid for room in only_first.rooms] == [created.sid]
    assert [room.name for room in after.rooms] == ["call-2"]
    assert [method for method, _ in livekit.calls] == [
        "CreateRoom",
        "CreateRoom",
        "ListRooms",
        "ListRooms",
        "DeleteRoom",
        "ListRooms",
    ]
    assert livekit.calls_to("DeleteRoom") == [DeleteRoomRequest(room="call-1")]


@pytest.mark.anyio
async def test_create_existing_room_returns_it_unchanged(livekit: LiveKitDouble) -> None:
    async with client(livekit) as lkapi:
        first = await lkapi.room.create_room(CreateRoomRequest(name="call", metadata="a"))
        again = await lkapi.room.create_room(CreateRoomRequest(name="call", metadata="b"))

    assert again == first
    assert list(livekit.rooms) == ["call"]


@pytest.mark.anyio
async def test_delete_unknown_room_is_not_found(livekit: LiveKitDouble) -> None:
    async with client(livekit) as lkapi:
        with pytest.raises(api.TwirpError) as caught:
            await lkapi.room.delete_room(DeleteRoomRequest(room="nope"))

    assert (caught.value.code, caught.value.status) == ("not_found", 404)
    assert caught.value.message == "requested room does not exist"


@pytest.mark.anyio
async def test_participants_listed_and_removed(livekit: LiveKitDouble) -> None:
    async with client(livekit) as lkapi:
        await lkapi.room.create_room(CreateRoomRequest(name="call"))
        alice = livekit.add_participant("call", "alice", name="Alice")
        livekit.add_participant("call", "bob")
        before = await lkapi.room.list_participants(ListParticipantsRequest(room="call"))
        await lkapi.room.remove_participant(RoomParticipantIdentity(room="call", identity="bob"))
        after = await lkapi.room.list_participants(ListParticipantsRequest(room="call"))
        empty = await lkapi.room.list_participants(ListParticipantsRequest(room="other"))
        with pytest.raises(api.TwirpError) as caught:
            await lkapi.room.remove_participant(
                RoomParticipantIdentity(room="call", identity="bob")
            )

    assert sorted(p.identity for p in before.participants) == ["alice", "bob"]
    assert list(after.participants) == [alice]
    assert list(empty.participants) == []
    assert livekit.rooms["call"].num_participants == 1
    assert (caught.value.code, caught.value.status) == ("not_found", 404)


# ---------------------------------------------------------------- auth


@pytest.mark.anyio
async def test_wrong_secret_is_refused_with_a_plain_401(livekit: LiveKitDouble) -> None:
    async with client(livekit, secret="another-secret-that-is-also-32-characters-long") as lkapi:
        with pytest.raises(api.TwirpError) as caught:
            await lkapi.room.create_room(CreateRoomRequest(name="call"))

    # LiveKit's middleware answers plain text, so the client has no Twirp code to read.
    assert (caught.value.code, caught.value.status, caught.value.message) == ("unknown", 401, "")
    assert livekit.rooms == {}


@pytest.mark.anyio
async def test_expired_token_is_refused(livekit: LiveKitDouble) -> None:
    expired = (
        api.AccessToken(KEY, SECRET)
        .with_grants(api.VideoGrants(room_create=True))
        .with_ttl(timedelta(minutes=-5))  # beyond the verifier's one-minute leeway
        .to_jwt()
    )
    async with client(livekit, token=expired) as lkapi:
        with pytest.raises(api.TwirpError) as caught:
            await lkapi.room.create_room(CreateRoomRequest(name="call"))

    assert caught.value.status == 401
    assert livekit.rooms == {}


@pytest.mark.anyio
async def test_missing_grant_is_unauthenticated(livekit: LiveKitDouble) -> None:
    list_only = token_with(api.VideoGrants(room_list=True))
    async with client(livekit, token=list_only) as lkapi:
        listed = await lkapi.room.list_rooms(ListRoomsRequest())
        with pytest.raises(api.TwirpError) as caught:
            await lkapi.room.create_room(CreateRoomRequest(name="call"))

    assert list(listed.rooms) == []
    assert (caught.value.code, caught.value.status) == ("unauthenticated", 401)
    assert caught.value.message == "permissions denied"
    # Refused calls are still recorded: the client did make them.
    assert [method for method, _ in livekit.calls] == ["ListRooms", "CreateRoom"]


@pytest.mark.anyio
async def test_list_rooms_needs_room_list_not_room_create(livekit: LiveKitDouble) -> None:
    create_only = token_with(api.VideoGrants(room_create=True))
    async with client(livekit, token=create_only) as lkapi:
        await lkapi.room.create_room(CreateRoomRequest(name="call"))
        with pytest.raises(api.TwirpError) as caught:
            await lkapi.room.list_rooms(ListRoomsRequest())

    assert (caught.value.code, caught.value.status) == ("unauthenticated", 401)


@pytest.mark.anyio
async def test_room_admin_grant_is_scoped_to_its_room(livekit: LiveKitDouble) -> None:
    async with client(livekit) as lkapi:
        await lkapi.room.create_room(CreateRoomRequest(name="mine"))
        await lkapi.room.create_room(CreateRoomRequest(name="theirs"))
    admin_of_mine = token_with(api.VideoGrants(room_admin=True, room="mine"))
    async with client(livekit, token=admin_of_mine) as lkapi:
        await lkapi.room.list_participants(ListParticipantsRequest(room="mine"))
        with pytest.raises(api.TwirpError) as caught:
            await lkapi.room.list_participants(ListParticipantsRequest(room="theirs"))

    assert caught.value.code == "unauthenticated"


@pytest.mark.anyio
async def test_egress_needs_room_record(livekit: LiveKitDouble) -> None:
    async with client(livekit) as lkapi:
        await lkapi.room.create_room(CreateRoomRequest(name="call"))
    creator = token_with(api.VideoGrants(room_create=True))
    async with client(livekit, token=creator) as lkapi:
        with pytest.raises(api.TwirpError) as caught:
            await lkapi.egress.start_room_composite_egress(recording_request("call"))

    assert caught.value.code == "unauthenticated"
    assert livekit.egresses == {}


# ---------------------------------------------------------------- egress


@pytest.mark.anyio
async def test_start_and_stop_room_composite_egress(livekit: LiveKitDouble) -> None:
    async with client(livekit) as lkapi:
        room = await lkapi.room.create_room(CreateRoomRequest(name="call-9"))
        started = await lkapi.egress.start_room_composite_egress(recording_request("call-9"))
        active = livekit.egresses[started.egress_id]
        listed_active = await lkapi.egress.list_egress(ListEgressRequest(active=True))
        stopped = await lkapi.egress.stop_egress(StopEgressRequest(egress_id=started.egress_id))
        listed_after = await lkapi.egress.list_egress(ListEgressRequest(room_name="call-9"))
        with pytest.raises(api.TwirpError) as again:
            await lkapi.egress.stop_egress(StopEgressRequest(egress_id=started.egress_id))
        with pytest.raises(api.TwirpError) as unknown:
            await lkapi.egress.stop_egress(StopEgressRequest(egress_id="EG_unknown"))

    assert started.egress_id.startswith("EG_")
    assert (started.room_id, started.room_name) == (room.sid, "call-9")
    assert started.status == EgressStatus.EGRESS_STARTING
    assert started.room_composite == recording_request("call-9")
    assert active.status == EgressStatus.EGRESS_ACTIVE
    assert [info.egress_id for info in listed_active.items] == [started.egress_id]
    assert stopped.status == EgressStatus.EGRESS_ENDING

    [complete] = listed_after.items
    assert complete.status == EgressStatus.EGRESS_COMPLETE
    [file] = complete.file_results
    assert file.filename == "calls/call-9.ogg"
    assert file.duration == complete.ended_at - complete.started_at
    assert file.duration >= 0
    assert (again.value.code, again.value.status) == ("failed_precondition", 412)
    assert again.value.message == "egress with status EGRESS_COMPLETE cannot be stopped"
    assert (unknown.value.code, unknown.value.status) == ("not_found", 404)


@pytest.mark.anyio
async def test_egress_of_unknown_room_is_not_found(livekit: LiveKitDouble) -> None:
    async with client(livekit) as lkapi:
        with pytest.raises(api.TwirpError) as caught:
            await lkapi.egress.start_room_composite_egress(recording_request("nope"))

    assert caught.value.code == "not_found"


@pytest.mark.anyio
async def test_deleting_a_room_completes_its_recording(livekit: LiveKitDouble) -> None:
    async with client(livekit) as lkapi:
        await lkapi.room.create_room(CreateRoomRequest(name="call"))
        started = await lkapi.egress.start_room_composite_egress(recording_request("call"))
        await lkapi.room.delete_room(DeleteRoomRequest(room="call"))

    info = livekit.egresses[started.egress_id]
    assert info.status == EgressStatus.EGRESS_COMPLETE
    assert [f.filename for f in info.file_results] == ["calls/call.ogg"]


# ---------------------------------------------------------------- call log and faults


@pytest.mark.anyio
async def test_fail_next_then_recover(livekit: LiveKitDouble) -> None:
    livekit.fail_next("CreateRoom", times=2)
    livekit.fail_next("DeleteRoom", code="resource_exhausted", status=429)
    async with client(livekit) as lkapi:
        errors = []
        for _ in range(2):
            with pytest.raises(api.TwirpError) as caught:
                await lkapi.room.create_room(CreateRoomRequest(name="call"))
            errors.append((caught.value.code, caught.value.status))
        room = await lkapi.room.create_room(CreateRoomRequest(name="call"))
        with pytest.raises(api.TwirpError) as throttled:
            await lkapi.room.delete_room(DeleteRoomRequest(room="call"))
        await lkapi.room.delete_room(DeleteRoomRequest(room="call"))

    # The client does not retry against a self-hosted URL: each 5xx reaches the caller.
    assert errors == [("unavailable", 503), ("unavailable", 503)]
    assert room.name == "call"
    assert (throttled.value.code, throttled.value.status) == ("resource_exhausted", 429)
    assert len(livekit.calls_to("CreateRoom")) == 3
    assert len(livekit.calls_to("DeleteRoom")) == 2
    assert livekit.rooms == {}


@pytest.mark.anyio
async def test_wait_for_call_sees_a_call_made_concurrently(livekit: LiveKitDouble) -> None:
    async def create() -> None:
        await anyio.sleep(0.1)
        async with client(livekit) as lkapi:
            await lkapi.room.create_room(CreateRoomRequest(name="late"))

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(create)
        seen = await anyio.to_thread.run_sync(lambda: livekit.wait_for_call("CreateRoom", 5.0))

    assert seen == CreateRoomRequest(name="late")


def test_wait_for_call_times_out(livekit: LiveKitDouble) -> None:
    with pytest.raises(TimeoutError, match="StopEgress"):
        livekit.wait_for_call("StopEgress", timeout=0.05)


def test_unknown_method_names_are_refused_by_the_helpers(livekit: LiveKitDouble) -> None:
    with pytest.raises(ValueError, match="CreateRooom"):
        livekit.fail_next("CreateRooom")
    with pytest.raises(ValueError, match="CreateRooom"):
        livekit.calls_to("CreateRooom")


def test_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="32"):
        LiveKitDouble(KEY, "secret")


# ---------------------------------------------------------------- raw Twirp


def post(
    double: LiveKitDouble, path: str, body: bytes, content_type: str = "application/protobuf"
) -> tuple[int, dict[str, object]]:
    token = token_with(api.VideoGrants(room_create=True, room_list=True))
    request = urllib.request.Request(
        double.url + path,
        data=body,
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": content_type},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def test_unknown_method_is_bad_route(livekit: LiveKitDouble) -> None:
    status, error = post(livekit, "/twirp/livekit.RoomService/UpdateRoomMetadata", b"")

    assert status == 404
    assert error["code"] == "bad_route"
    assert livekit.calls == []


def test_method_under_the_wrong_service_is_bad_route(livekit: LiveKitDouble) -> None:
    status, error = post(livekit, "/twirp/livekit.Egress/CreateRoom", b"")

    assert (status, error["code"]) == (404, "bad_route")


def test_undecodable_body_is_malformed(livekit: LiveKitDouble) -> None:
    status, error = post(livekit, "/twirp/livekit.RoomService/CreateRoom", b"\xff\xff\xff")

    assert (status, error["code"]) == (400, "malformed")


def test_twirp_json_encoding_is_served(livekit: LiveKitDouble) -> None:
    status, room = post(
        livekit,
        "/twirp/livekit.RoomService/CreateRoom",
        b'{"name": "json-room"}',
        content_type="application/json",
    )

    assert status == 200
    assert room["name"] == "json-room"
    assert livekit.calls_to("CreateRoom") == [CreateRoomRequest(name="json-room")]


# ---------------------------------------------------------------- webhooks


def receiver(secret: str = SECRET) -> api.WebhookReceiver:
    return api.WebhookReceiver(api.TokenVerifier(KEY, secret))


def test_signed_webhook_round_trips_through_the_sdk_receiver(livekit: LiveKitDouble) -> None:
    event = livekit.make_event(
        "participant_joined", "call", participant_identity="alice", created_at=1_700_000_000
    )
    body, authorization = livekit.signed_webhook(event)

    received = receiver().receive(body.decode(), authorization)

    assert received == event
    assert received.event == "participant_joined"
    assert received.room.name == "call"
    assert received.participant.identity == "alice"
    assert received.id.startswith("EV_")
    assert received.created_at == 1_700_000_000
    # LiveKit's protobuf JSON: camelCase names, int64 as strings.
    assert json.loads(body)["createdAt"] == "1700000000"
    assert WEBHOOK_CONTENT_TYPE == "application/webhook+json"


def test_tampered_webhook_body_fails_verification(livekit: LiveKitDouble) -> None:
    body, authorization = livekit.signed_webhook(livekit.make_event("room_finished", "call"))
    tampered = body.replace(b'"call"', b'"other"')
    assert tampered != body

    with pytest.raises(Exception, match="hash mismatch"):
        receiver().receive(tampered.decode(), authorization)


def test_webhook_signed_with_another_secret_fails_verification(livekit: LiveKitDouble) -> None:
    body, authorization = livekit.signed_webhook(livekit.make_event("room_started", "call"))

    with pytest.raises(Exception, match="Signature"):
        receiver("another-secret-that-is-also-32-characters-long").receive(
            body.decode(), authorization
        )


@pytest.mark.anyio
async def test_egress_ended_event_carries_the_stored_egress(livekit: LiveKitDouble) -> None:
    async with client(livekit) as lkapi:
        room = await lkapi.room.create_room(CreateRoomRequest(name="call"))
        started = await lkapi.egress.start_room_composite_egress(recording_request("call"))
        await lkapi.egress.stop_egress(StopEgressRequest(egress_id=started.egress_id))
    done = livekit.egresses[started.egress_id]

    event = livekit.make_event("egress_ended", "call", egress=done, event_id="EV_fixed")
    body, authorization = livekit.signed_webhook(event)
    received = receiver().receive(body.decode(), authorization)

    assert received.egress_info == done
    assert received.egress_info.room_id == room.sid
    assert received.egress_info.file_results[0].filename == "calls/call.ogg"
    assert not received.HasField("room")  # LiveKit's egress events name no room
    assert received.id == "EV_fixed"


def test_make_event_checks_its_arguments(livekit: LiveKitDouble) -> None:
    with pytest.raises(ValueError, match="room_strated"):
        livekit.make_event("room_strated", "call")
    with pytest.raises(ValueError, match="needs the egress"):
        livekit.make_event("egress_ended", "call")
    with pytest.raises(ValueError, match="not 'call'"):
        livekit.make_event("egress_ended", "call", egress=EgressInfo(room_name="other"))


def test_make_event_uses_the_stored_room(livekit: LiveKitDouble) -> None:
    status, created = post(
        livekit,
        "/twirp/livekit.RoomService/CreateRoom",
        b'{"name": "call"}',
        content_type="application/json",
    )
    assert status == 200

    event = livekit.make_event("room_started", "call")

    assert event.room.sid == created["sid"]
