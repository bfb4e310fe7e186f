"""Order, uniqueness and no loss, with processes killed under a live stream.

Each test here runs its own system, since it kills parts of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from chatclient import (
    Ack,
    ChatClient,
    ChatHttp,
    MessageEvent,
    SendMessage,
    StoredMessage,
    new_client_msg_id,
)
from tests.conftest import start_stack
from tools.stack import Stack

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@pytest.fixture
def own_stack(
    database_factory: Callable[[], str], tmp_path: Path
) -> Iterator[Callable[[int], Stack]]:
    started: list[Stack] = []

    def make(instances: int) -> Stack:
        stack = start_stack(database_factory(), tmp_path / f"stack{len(started)}", instances)
        started.append(stack)
        return stack

    yield make
    for stack in started:
        stack.stop()


@dataclass
class Person:
    http: ChatHttp
    user_id: str
    client: ChatClient


@contextlib.asynccontextmanager
async def person(api_url: str, name: str) -> AsyncIterator[Person]:
    async with ChatHttp(api_url) as http:
        session = await http.register(f"{name}_{secrets.token_hex(4)}", "correct horse", name)
        creds = await http.create_device("android")
        async with ChatClient(creds, session.user_id, http=http) as client:
            yield Person(http, session.user_id, client)


def send_text(client: ChatClient, conv_id: str, text: str) -> asyncio.Future[Ack]:
    """Queue a send without waiting: the outbox keeps per-conversation order."""
    return client.send(
        conv_id, SendMessage(client_msg_id=new_client_msg_id(), kind="text", text=text)
    )


async def collect(
    client: ChatClient, conv_id: str, count: int, timeout: float
) -> dict[int, StoredMessage]:
    """Messages of a conversation by seq until `count` distinct ones arrived."""
    got: dict[int, StoredMessage] = {}
    async with asyncio.timeout(timeout):
        while len(got) < count:
            event = await client.next_event()
            if isinstance(event, MessageEvent) and event.message.conv_id == conv_id:
                got[event.message.seq] = event.message
    return got


async def full_history(http: ChatHttp, conv_id: str) -> list[StoredMessage]:
    messages: list[StoredMessage] = []
    while True:
        page = await http.history(conv_id, after_seq=len(messages), limit=200)
        if not page:
            return messages
        messages.extend(page)


def assert_gap_free_and_unique(messages: list[StoredMessage], expected: int) -> None:
    assert [m.seq for m in messages] == list(range(1, expected + 1))
    keys = [(m.sender_id, m.client_msg_id) for m in messages]
    assert len(set(keys)) == len(keys) == expected


async def test_two_instances_several_senders_seq_is_gap_free_and_in_send_order(
    own_stack: Callable[[int], Stack],
) -> None:
    stack = own_stack(2)
    per_sender = 60
    async with (
        person(stack.config.api_url, "ana") as ana,
        person(stack.config.api_url, "ben") as ben,
        person(stack.config.api_url, "cem") as cem,
    ):
        conv = (await ana.http.create_conversation([ben.user_id, cem.user_id]))["conv_id"]
        senders = (ana, ben, cem)
        futures = [
            [send_text(s.client, conv, f"{s.user_id} #{i}") for i in range(per_sender)]
            for s in senders
        ]
        acks = await asyncio.wait_for(asyncio.gather(*(f for row in futures for f in row)), 60)
        assert {a.status for a in acks} == {"stored"}
        history = await full_history(ana.http, conv)
        assert_gap_free_and_unique(history, 3 * per_sender)
        for sender in senders:
            texts = [m.text for m in history if m.sender_id == sender.user_id]
            assert texts == [f"{sender.user_id} #{i}" for i in range(per_sender)]
        delivered = await collect(cem.client, conv, 3 * per_sender, 30)
        assert sorted(delivered) == list(range(1, 3 * per_sender + 1))


async def stream_with_fault(stack: Stack, fault: Callable[[], None], total: int = 1000) -> None:
    async with (
        person(stack.config.api_url, "seller") as seller,
        person(stack.config.api_url, "buyer") as buyer,
    ):
        conv = (await seller.http.create_conversation([buyer.user_id]))["conv_id"]
        futures = [send_text(seller.client, conv, f"offer {i}") for i in range(total)]
        # Let part of the stream through, then break something.
        await asyncio.wait_for(asyncio.gather(*futures[: total // 4]), 60)
        await asyncio.to_thread(fault)
        acks = await asyncio.wait_for(asyncio.gather(*futures), 120)
        assert len(acks) == total and {a.status for a in acks} <= {"stored", "duplicate"}
        history = await full_history(seller.http, conv)
        assert_gap_free_and_unique(history, total)
        assert [m.text for m in history] == [f"offer {i}" for i in range(total)]
        delivered = await collect(buyer.client, conv, total, 60)
        assert sorted(delivered) == list(range(1, total + 1))


async def test_kill_9_persistence_mid_stream_loses_nothing(
    own_stack: Callable[[int], Stack],
) -> None:
    stack = own_stack(1)

    def kill_and_restart() -> None:
        stack.kill("persistence-1")
        stack.start_persistence("1")

    await stream_with_fault(stack, kill_and_restart)


async def test_broker_restart_mid_stream_loses_nothing(own_stack: Callable[[int], Stack]) -> None:
    stack = own_stack(1)

    def restart_broker() -> None:
        stack.terminate("broker")
        stack.start_broker()

    await stream_with_fault(stack, restart_broker)
    async with ChatHttp(stack.config.api_url) as http:
        # The API reconnected too: it can provision a device again.
        await http.register(f"late_{secrets.token_hex(4)}", "correct horse", "Late")
        assert (await http.create_device("ios")).device_id


async def test_database_dropping_every_connection_mid_stream_loses_nothing(
    own_stack: Callable[[int], Stack], db_kind: str
) -> None:
    """PostgreSQL ends every session of the system's database (as a failover or
    an administrator would): the persistence service's connections, its own
    store line included, reconnect and the stream is stored exactly once."""
    if db_kind != "postgresql":
        pytest.skip("SQLite has no connections to drop; runs in the PostgreSQL leg")
    stack = own_stack(1)
    database = stack.config.database_url.rsplit("/", 1)[1]

    def drop_connections() -> None:
        with psycopg.connect(stack.config.database_url, autocommit=True) as admin:
            ended = admin.execute(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))"
                " FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            ).fetchone()
        assert ended is not None and ended[0] > 0

    await stream_with_fault(stack, drop_connections)


async def test_committed_but_undelivered_is_delivered_by_the_outbox_sweep(
    own_stack: Callable[[int], Stack],
) -> None:
    """An HTTP send is committed while the broker is down, and the API dies before
    it could deliver: the persistence service's sweep delivers it later."""
    stack = own_stack(1)
    async with (
        person(stack.config.api_url, "seller") as seller,
        person(stack.config.api_url, "buyer") as buyer,
    ):
        conv = (await seller.http.create_conversation([buyer.user_id]))["conv_id"]
        await buyer.client.close()  # offline; its persistent session stays
        await asyncio.to_thread(stack.terminate, "broker")
        body = SendMessage(client_msg_id="while-down", kind="text", text="still there?")
        status, stored = await seller.http.send(conv, body)
        assert status == 201 and stored["seq"] == 1
        await asyncio.to_thread(stack.kill, "api")
        await asyncio.to_thread(stack.start_broker)
        await asyncio.to_thread(stack.start_api)
        async with ChatClient(buyer.client.creds, buyer.user_id) as again:
            message = await again.wait_for_message(lambda m: m.conv_id == conv, 20)
            assert (message.seq, message.text) == (1, "still there?")


async def test_a_send_the_restarted_broker_had_no_subscriber_for_is_sent_again(
    own_stack: Callable[[int], Stack],
) -> None:
    """Mosquitto 2.0 does not restore shared subscriptions after a restart: until
    the persistence service subscribes again, a send is acknowledged by the broker
    (no matching subscribers) and dropped. The client's ack timeout sends it again."""
    stack = own_stack(1)
    async with (
        person(stack.config.api_url, "seller") as seller,
        person(stack.config.api_url, "buyer") as buyer,
    ):
        conv = (await seller.http.create_conversation([buyer.user_id]))["conv_id"]
        assert (await send_text(seller.client, conv, "before")).status == "stored"
        await asyncio.to_thread(stack.kill, "persistence-1")
        await asyncio.to_thread(stack.terminate, "broker")
        await asyncio.to_thread(stack.start_broker)
        await seller.client.wait_reconnected(20)
        pending = send_text(seller.client, conv, "into the void")
        await asyncio.sleep(1.0)  # published and dropped: nobody was subscribed
        assert not pending.done()
        await asyncio.to_thread(stack.start_persistence, "1")
        ack = await asyncio.wait_for(pending, 20)
        assert (ack.status, ack.seq) == ("stored", 2)
        message = await buyer.client.wait_for_message(lambda m: m.seq == 2, 10)
        assert message.text == "into the void"
