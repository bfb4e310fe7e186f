"""Message pushes with two push instances sharing `push/message`: a window
collects what both received and is pushed once, and a window whose opener is
killed is pushed by the other instance, once."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from core.db import make_engine, reading
from core.models import PushWindow
from tests.conftest import UNLIMITED
from tests.integration.call_helpers import eventually, phone
from tests.integration.test_push_calls import messages_to, offline_with_token
from tests.integration.test_push_messages import send_texts
from tools.expo_double import ExpoDouble
from tools.stack import API, PERSISTENCE, PUSH, Stack, StackConfig

pytestmark = pytest.mark.anyio

# Long enough that a burst sent over HTTP surely falls into one window.
WINDOW = 3.0
# The opener's window is taken over within TAKEOVER_GRACE + SWEEP_SECONDS
# (services/push/collapse.py) after it was due.
TAKEOVER = 2.0 + 1.0


@pytest.fixture(scope="module")
def pushers(
    database_factory: object, tmp_path_factory: pytest.TempPathFactory, expo: ExpoDouble
) -> Iterator[Stack]:
    """The API, two persistence and two push instances, with a long window."""
    config = StackConfig(
        data_dir=tmp_path_factory.mktemp("pushers"),
        database_url=database_factory(),  # type: ignore[operator]
        persistence_instances=2,
        push_instances=2,
        extra_env={
            **UNLIMITED,
            "EXPO_API_URL": expo.url,
            "PUSH_MESSAGE_WINDOW_SECONDS": str(WINDOW),
        },
    )
    stack = Stack(config)
    try:
        stack.start([API, PERSISTENCE, PUSH])
        yield stack
    finally:
        stack.stop()


def open_windows(stack: Stack) -> int:
    engine = make_engine(stack.config.database_url)
    try:
        with reading(engine) as conn:
            return int(conn.execute(select(func.count()).select_from(PushWindow)).scalar_one())
    finally:
        engine.dispose()


async def test_a_burst_split_between_instances_is_one_push(
    pushers: Stack, expo: ExpoDouble
) -> None:
    api = pushers.config.api_url
    async with phone(api, "alice", devices=0) as alice, phone(api, "bob", devices=0) as bob:
        conv = await alice.converse_with(bob)
        _, token = await offline_with_token(bob, "split")
        # The shared subscription deals the messages out in turn to both instances.
        texts = [f"offer {n}" for n in range(6)]
        await send_texts(alice, conv, *texts)
        [push] = await messages_to(expo, token, 1, timeout=WINDOW + 5)
        assert push["body"] == "6 new messages"
        assert push["data"] == {"type": "message", "conv_id": conv, "seq": 6, "count": 6}
        await eventually(lambda: open_windows(pushers) == 0)
        with pytest.raises(TimeoutError):
            await messages_to(expo, token, 2, timeout=TAKEOVER + 1)


async def test_windows_of_a_killed_instance_are_pushed_by_the_other(
    pushers: Stack, expo: ExpoDouble
) -> None:
    api = pushers.config.api_url
    run = secrets.token_hex(2)
    async with phone(api, "alice", devices=0) as alice:
        tokens = {}
        for index in range(4):
            async with phone(api, f"buyer{index}", devices=0) as buyer:
                conv = await alice.converse_with(buyer)
                _, tokens[conv] = await offline_with_token(buyer, f"kill{run}{index}")
        # Dealt out in turn, so each instance opens some of the windows.
        for index, conv in enumerate(tokens):
            await send_texts(alice, conv, f"still available, {index}?")
        await eventually(lambda: open_windows(pushers) == len(tokens))
        await asyncio.to_thread(pushers.kill, "push-1")
        for conv, token in tokens.items():
            [push] = await messages_to(expo, token, 1, timeout=WINDOW + TAKEOVER + 5)
            assert push["data"]["conv_id"] == conv and push["data"]["count"] == 1
        assert open_windows(pushers) == 0
        with pytest.raises(TimeoutError):
            await eventually(
                lambda: any(len(expo.messages_to(t)) > 1 for t in tokens.values()), TAKEOVER + 1
            )
