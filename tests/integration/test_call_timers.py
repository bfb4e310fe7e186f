"""Ring timeouts and the join grace, on a stack with short timers; and a ring
timeout that outlives a kill -9 of the call signaling service."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest

from bridge import topics
from tests.conftest import start_stack
from tests.integration.call_helpers import eventually, phone, service_watcher
from tests.integration.test_call_livekit import answered_call, deliver, join
from tools.livekit_double import LiveKitDouble
from tools.stack import Stack

pytestmark = pytest.mark.anyio

RING_TIMEOUT = 1.5


@pytest.fixture(scope="module")
def timer_stack(
    database_factory: object, tmp_path_factory: pytest.TempPathFactory, livekit: LiveKitDouble
) -> Iterator[Stack]:
    stack = start_stack(
        database_factory(),  # type: ignore[operator]
        tmp_path_factory.mktemp("timers"),
        instances=1,
        callsig_instances=1,
        livekit=livekit,
        CALL_RING_TIMEOUT_SECONDS=str(RING_TIMEOUT),
        CALL_JOIN_GRACE_SECONDS="1.5",
        CALL_SWEEP_SECONDS="0.5",
    )
    yield stack
    stack.stop()


async def test_an_unanswered_call_ends_for_the_caller_and_is_missed_by_the_callee(
    timer_stack: Stack,
) -> None:
    api = timer_stack.config.api_url
    async with (
        phone(api, "alice") as alice,
        phone(api, "bob", devices=2) as bob,
        service_watcher(timer_stack, "push-watch-timers") as watcher,
    ):
        await watcher.subscribe([(topics.push_call(bob.user_id), 1)])
        await alice.converse_with(bob)
        call_id = await alice.device.start_call(bob.user_id)
        await alice.device.wait_for_call_event("ringing", call_id)
        ended = await alice.device.wait_for_call_event("ended", call_id, timeout=RING_TIMEOUT + 5)
        assert ended.reason == "no_answer"
        for device in bob.devices:
            await device.wait_for_call_event("missed", call_id)
        notices = [json.loads((await watcher.next_message(5)).payload)["event"] for _ in range(2)]
        assert notices == ["incoming", "missed"]

        history = await bob.http.calls()
        assert history["calls"][0]["status"] == "missed"
        assert history["calls"][0]["direction"] == "incoming"
        assert history["missed_unseen"] == 1
        assert await bob.http.mark_calls_seen([call_id]) == 0


async def test_a_ring_timeout_survives_a_kill_of_the_signaling_service(
    timer_stack: Stack,
) -> None:
    api = timer_stack.config.api_url
    async with phone(api, "alice") as alice, phone(api, "bob") as bob:
        await alice.converse_with(bob)
        call_id = await alice.device.start_call(bob.user_id)
        await bob.device.wait_for_call_event("incoming", call_id)
        timer_stack.kill("callsig-1")
        await asyncio.sleep(RING_TIMEOUT + 0.5)  # the deadline passes while it is down
        await asyncio.to_thread(timer_stack.start_callsig, "1")
        ended = await alice.device.wait_for_call_event("ended", call_id, timeout=10)
        assert ended.reason == "no_answer"
        await bob.device.wait_for_call_event("missed", call_id)
        # And the line is free again.
        again = await alice.device.start_call(bob.user_id)
        await bob.device.wait_for_call_event("incoming", again)
        await alice.device.hang_up(again)


async def test_an_answered_call_nobody_joins_in_livekit_is_ended_after_the_grace(
    timer_stack: Stack,
) -> None:
    api = timer_stack.config.api_url
    async with phone(api, "alice") as alice, phone(api, "bob") as bob:
        await alice.converse_with(bob)
        call_id = await alice.device.start_call(bob.user_id)
        await bob.device.wait_for_call_event("incoming", call_id)
        await bob.device.accept_call(call_id)
        await alice.device.wait_for_call_event("accepted", call_id)
        for party in (alice, bob):
            ended = await party.device.wait_for_call_event("ended", call_id, timeout=6)
            assert ended.reason == "not_joined"


async def test_joined_calls_outlive_the_grace_and_a_failed_room_close_is_retried(
    timer_stack: Stack, livekit: LiveKitDouble
) -> None:
    async with answered_call(timer_stack) as (alice, bob, call_id):
        for event in join(livekit, call_id, alice, bob):
            deliver(timer_stack, livekit, event)
        with pytest.raises(TimeoutError):  # past the 1.5 s grace: both are in, it goes on
            await alice.device.wait_for_call_event("ended", call_id, timeout=2.5)

        livekit.fail_next("DeleteRoom", code="unavailable", status=503)
        await alice.device.hang_up(call_id)
        await bob.device.wait_for_call_event("ended", call_id)
        await eventually(lambda: call_id not in livekit.rooms, timeout=10)
        attempts = [r.room for r in livekit.calls_to("DeleteRoom")].count(call_id)
        assert attempts == 2  # refused once, then closed by the sweep
