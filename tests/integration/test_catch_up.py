"""Catch-up: a client that was away learns what it missed in one round trip."""

from __future__ import annotations

import asyncio
import secrets

import httpx
import pytest

from chatclient import ChatClient, ChatHttp, MessageEvent
from tests.factories import register
from tools.stack import Stack

pytestmark = pytest.mark.anyio


def _send(user: object, conv: str, n: int) -> None:
    for _ in range(n):
        response = user.request(  # type: ignore[attr-defined]
            "POST",
            f"/v1/conversations/{conv}/messages",
            json={"client_msg_id": secrets.token_hex(6), "kind": "text", "text": "hey"},
        )
        assert response.status_code == 201, response.text


async def message_seqs(client: ChatClient, count: int, timeout: float = 10) -> list[int]:
    """The seqs of the next `count` message events, skipping other events."""
    seqs: list[int] = []
    async with asyncio.timeout(timeout):
        while len(seqs) < count:
            event = await client.next_event()
            if isinstance(event, MessageEvent):
                seqs.append(event.message.seq)
    return seqs


def test_sync_returns_exactly_what_was_missed_in_one_call(stack: Stack) -> None:
    api = stack.config.api_url
    me, a, b, c = (register(api, n) for n in ("me", "a", "b", "c"))
    behind, unknown, current = me.conversation(a), me.conversation(b), me.conversation(c)
    _send(a, behind, 5)
    _send(b, unknown, 3)
    _send(c, current, 2)
    response = me.request("POST", "/v1/sync", json={"known": {behind: 2, current: 2}})
    assert response.status_code == 200, response.text
    found = {c["conv_id"]: c for c in response.json()["conversations"]}
    assert set(found) == {behind, unknown}
    assert [m["seq"] for m in found[behind]["messages"]] == [3, 4, 5]
    assert [m["seq"] for m in found[unknown]["messages"]] == [1, 2, 3]
    assert found[behind]["has_more"] is False and found[behind]["last_seq"] == 5
    limited = me.request("POST", "/v1/sync", json={"known": {behind: 0}, "limit": 2}).json()
    entry = next(c for c in limited["conversations"] if c["conv_id"] == behind)
    assert [m["seq"] for m in entry["messages"]] == [1, 2] and entry["has_more"] is True
    bad = me.request("POST", "/v1/sync", json={"known": {behind: -1}})
    assert bad.status_code == 422
    bad = me.request("POST", "/v1/sync", json={"known": {}, "since": 1})
    assert bad.status_code == 422


async def test_a_client_back_from_a_network_loss_gets_each_missed_message_once(
    stack: Stack,
) -> None:
    api = stack.config.api_url
    alice = register(api, "alice")
    async with ChatHttp(api) as http:
        bob = await http.register(f"bob_{secrets.token_hex(4)}", "correct horse", "Bob")
        conv = alice.conversation(bob.user_id)
        creds = await http.create_device("ios")
        async with ChatClient(creds, bob.user_id, http=http) as client:
            _send(alice, conv, 2)
            assert await message_seqs(client, 2) == [1, 2]
            client.drop()
            await asyncio.to_thread(_send, alice, conv, 5)
            await client.wait_reconnected(20)
            assert await message_seqs(client, 5) == [3, 4, 5, 6, 7]
            with pytest.raises(TimeoutError):  # and nothing twice
                await message_seqs(client, 1, timeout=1)


async def test_a_device_that_was_never_online_catches_up_with_sync(stack: Stack) -> None:
    api = stack.config.api_url
    alice = register(api, "alice")
    async with ChatHttp(api) as http:
        bob = await http.register(f"bob_{secrets.token_hex(4)}", "correct horse", "Bob")
        conv = alice.conversation(bob.user_id)
        _send(alice, conv, 4)
        creds = await http.create_device("web")
        async with ChatClient(creds, bob.user_id, http=http) as client:
            client.seed(conv, 1)
            assert await client.catch_up() == 3
            assert await message_seqs(client, 3) == [2, 3, 4]


async def test_a_burst_of_catch_ups_is_answered_not_starved(stack: Stack) -> None:
    """Many more catch-ups at once than the API has database connections and
    worker threads (devices back after a broker restart): every one is answered.
    A session held until the answer is written starved the worker threads: the
    burst was answered 503 until the pool's timeout, then again and again."""
    api = stack.config.api_url
    me, other = register(api, "me"), register(api, "other")
    conv = me.conversation(other)
    _send(other, conv, 3)
    burst = 200  # the API: 40 worker threads, 10 pooled connections
    async with httpx.AsyncClient(
        base_url=api, headers=me.headers, timeout=60, limits=httpx.Limits(max_connections=burst)
    ) as client:
        answers = await asyncio.gather(
            *(client.post("/v1/sync", json={"known": {}}) for _ in range(burst))
        )
    statuses = sorted({answer.status_code for answer in answers})
    assert statuses == [200], [a.text for a in answers if a.status_code != 200][:3]
    assert all(len(a.json()["conversations"][0]["messages"]) == 3 for a in answers)


class ApiRelay:
    """A TCP relay to the API that can be cut: `cut()` ends every open
    connection and closes new ones at once (to a client the API is unreachable,
    as on a flaky network); otherwise bytes go to the real API unchanged."""

    def __init__(self, api_url: str) -> None:
        target = httpx.URL(api_url)
        self.target = (target.host, target.port)
        self.down = False
        self.refused = asyncio.Event()
        self.passed = 0
        self._open: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *_exc: object) -> None:
        self.cut()
        assert self._server is not None
        self._server.close()

    def cut(self) -> None:
        self.down = True
        for writer in self._open:
            writer.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            self.refused.set()
            writer.transport.abort()
            return
        self.passed += 1
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._open.update((writer, up_writer))

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while chunk := await source.read(65536):
                    sink.write(chunk)
                    await sink.drain()
            except ConnectionError:
                pass
            finally:
                sink.transport.abort()
                self._open.discard(sink)

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def test_a_catch_up_that_fails_after_a_reconnect_is_asked_again(stack: Stack) -> None:
    api = stack.config.api_url
    alice = register(api, "alice")
    relay = ApiRelay(api)
    async with relay as relay_url, ChatHttp(relay_url) as http:
        bob = await http.register(f"bob_{secrets.token_hex(4)}", "correct horse", "Bob")
        conv = alice.conversation(bob.user_id)
        creds = await http.create_device("ios")
        async with ChatClient(creds, bob.user_id, http=http) as client:
            relay.cut()
            client.drop()
            await asyncio.to_thread(_send, alice, conv, 2)
            await asyncio.wait_for(relay.refused.wait(), 10)  # the first catch-up failed
            passed = relay.passed
            relay.down = False
            await client.wait_reconnected(20)
            assert relay.passed > passed  # asked again, and answered
            assert await message_seqs(client, 2) == [1, 2]
