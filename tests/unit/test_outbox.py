"""The outbox alone: no broker, a recording publish callback, `asyncio.run` per test.

The outbox needs a running loop only to create its futures, so every test body
is a coroutine run with `asyncio.run` (pytest-asyncio is not used here).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from bridge.mqtt import MqttError, PublishRefused
from bridge.wire.messaging import Ack, ErrorInfo, SendMessage
from chatclient.outbox import Outbox, OutboxClosed, new_client_msg_id


class Wire:
    """Records what the outbox publishes; optionally hands back PUBACK futures."""

    def __init__(self, *, pubacks: bool = False) -> None:
        self.published: list[tuple[str, bytes]] = []
        self.pubacks: list[asyncio.Future[None]] = []
        self._make_pubacks = pubacks

    def __call__(self, conv_id: str, payload: bytes) -> asyncio.Future[None] | None:
        self.published.append((conv_id, payload))
        if not self._make_pubacks:
            return None
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pubacks.append(future)
        return future

    def ids(self) -> list[str]:
        return [json.loads(payload)["client_msg_id"] for _conv, payload in self.published]


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(test())


def text(client_msg_id: str, body: str = "hi") -> SendMessage:
    return SendMessage(client_msg_id=client_msg_id, kind="text", text=body)


def stored(conv_id: str, client_msg_id: str, seq: int, **extra: Any) -> Ack:
    return Ack(
        client_msg_id=client_msg_id,
        conv_id=conv_id,
        status=extra.pop("status", "stored"),
        id=f"m{seq}",
        seq=seq,
        **extra,
    )


async def settle() -> None:
    # Let done-callbacks scheduled with call_soon run.
    for _ in range(3):
        await asyncio.sleep(0)


def test_ack_resolves_the_future() -> None:
    async def body() -> None:
        wire = Wire()
        outbox = Outbox(wire)
        future = outbox.send("c1", text("a"))
        assert wire.ids() == ["a"]
        assert not future.done()
        assert outbox.on_ack(stored("c1", "a", 1)) is True
        ack = await asyncio.wait_for(future, 1)
        assert (ack.status, ack.seq, ack.id) == ("stored", 1, "m1")
        assert len(outbox) == 0

    run(body)


def test_payload_is_the_send_message_without_nulls() -> None:
    async def body() -> None:
        wire = Wire()
        outbox = Outbox(wire)
        outbox.send("c1", SendMessage(client_msg_id="a", kind="text", text="hey", reply_to="m0"))
        conv_id, payload = wire.published[0]
        assert conv_id == "c1"
        assert json.loads(payload) == {
            "client_msg_id": "a",
            "kind": "text",
            "text": "hey",
            "reply_to": "m0",
        }

    run(body)


def test_rejected_ack_is_a_result_not_an_exception() -> None:
    async def body() -> None:
        outbox = Outbox(Wire())
        future = outbox.send("c1", text("a"))
        rejected = Ack(
            client_msg_id="a",
            conv_id="c1",
            status="rejected",
            error=ErrorInfo(code="not_member", message="you are not a member"),
        )
        outbox.on_ack(rejected)
        ack = await asyncio.wait_for(future, 1)
        assert ack.status == "rejected"
        assert ack.error is not None and ack.error.code == "not_member"

    run(body)


def test_in_flight_limit_holds_later_sends_of_the_same_conversation() -> None:
    async def body() -> None:
        wire = Wire()
        outbox = Outbox(wire)  # max_in_flight=1
        first = outbox.send("c1", text("a"))
        second = outbox.send("c1", text("b"))
        third = outbox.send("c1", text("c"))
        other = outbox.send("c2", text("x"))
        # c1 has one on the wire, c2 is not blocked by c1.
        assert wire.ids() == ["a", "x"]
        assert [p.client_msg_id for p in outbox.waiting("c1")] == ["b", "c"]

        outbox.on_ack(stored("c1", "a", 1))
        assert wire.ids() == ["a", "x", "b"]
        assert first.done() and not second.done() and not third.done()

        outbox.on_ack(stored("c2", "x", 1))
        assert other.done()
        assert wire.ids() == ["a", "x", "b"]  # c2's ack releases nothing of c1

        outbox.on_ack(stored("c1", "b", 2))
        assert wire.ids() == ["a", "x", "b", "c"]
        outbox.on_ack(stored("c1", "c", 3))
        assert [(await f).seq for f in (first, second, third)] == [1, 2, 3]
        assert len(outbox) == 0

    run(body)


def test_a_higher_in_flight_limit_lets_that_many_go_out() -> None:
    async def body() -> None:
        wire = Wire()
        outbox = Outbox(wire, max_in_flight=2)
        for client_msg_id in "abcd":
            outbox.send("c1", text(client_msg_id))
        assert wire.ids() == ["a", "b"]
        outbox.on_ack(stored("c1", "b", 2))  # acks may come out of order
        assert wire.ids() == ["a", "b", "c"]

    run(body)


def test_resend_all_republishes_exactly_the_unacked_sends() -> None:
    async def body() -> None:
        wire = Wire()
        outbox = Outbox(wire)
        outbox.send("c1", text("a", "one"))
        outbox.send("c1", text("b", "two"))  # waits behind a
        outbox.send("c2", text("x", "ten"))
        outbox.send("c3", text("y", "eleven"))
        outbox.on_ack(stored("c1", "a", 1))  # b goes out
        outbox.on_ack(stored("c3", "y", 4))
        before = {json.loads(p)["client_msg_id"]: (c, p) for c, p in wire.published}

        wire.published.clear()
        assert outbox.resend_all() == 2  # the connection came back
        assert sorted(wire.ids()) == ["b", "x"]
        for conv_id, payload in wire.published:
            # Same conversation, byte-identical payload: same client_msg_id and body.
            assert before[json.loads(payload)["client_msg_id"]] == (conv_id, payload)

    run(body)


def test_resend_all_does_not_publish_sends_still_waiting_for_their_turn() -> None:
    async def body() -> None:
        wire = Wire()
        outbox = Outbox(wire)
        outbox.send("c1", text("a"))
        outbox.send("c1", text("b"))
        wire.published.clear()
        assert outbox.resend_all() == 1
        assert wire.ids() == ["a"]

    run(body)


def test_duplicate_ack_resolves_the_future() -> None:
    async def body() -> None:
        wire = Wire()
        outbox = Outbox(wire)
        future = outbox.send("c1", text("a"))
        outbox.resend_all()  # the first ack was lost with the connection
        outbox.on_ack(stored("c1", "a", 7, status="duplicate"))
        ack = await asyncio.wait_for(future, 1)
        assert (ack.status, ack.seq) == ("duplicate", 7)
        # The ack of the other copy arrives too: not ours any more, ignored.
        assert outbox.on_ack(stored("c1", "a", 7)) is False
        assert (await future).status == "duplicate"

    run(body)


def test_unknown_acks_are_ignored() -> None:
    async def body() -> None:
        wire = Wire()
        outbox = Outbox(wire)
        mine = outbox.send("c1", text("a"))
        waiting = outbox.send("c1", text("b"))
        # Another device's send, the right id in the wrong conversation, an ack
        # for a send that never went on the wire, and an unparseable send's ack.
        assert outbox.on_ack(stored("c1", "zzz", 5)) is False
        assert outbox.on_ack(stored("c2", "a", 5)) is False
        assert outbox.on_ack(stored("c1", "b", 5)) is False
        nameless = Ack(client_msg_id=None, conv_id="c1", status="rejected")
        assert outbox.on_ack(nameless) is False
        await settle()
        assert not mine.done() and not waiting.done()
        assert wire.ids() == ["a"]
        assert len(outbox) == 2

    run(body)


def test_same_client_msg_id_while_pending_is_not_sent_twice() -> None:
    async def body() -> None:
        wire = Wire()
        outbox = Outbox(wire)
        first = outbox.send("c1", text("a", "one"))
        again = outbox.send("c1", text("a", "other body"))
        assert again is first
        assert wire.ids() == ["a"]
        # The same id in another conversation is another message.
        elsewhere = outbox.send("c2", text("a"))
        assert elsewhere is not first
        assert wire.ids() == ["a", "a"]

    run(body)


def test_a_withdrawn_waiting_send_never_goes_out() -> None:
    async def body() -> None:
        wire = Wire()
        outbox = Outbox(wire)
        outbox.send("c1", text("a"))
        withdrawn = outbox.send("c1", text("b"))
        outbox.send("c1", text("c"))
        withdrawn.cancel()
        outbox.on_ack(stored("c1", "a", 1))
        assert wire.ids() == ["a", "c"]

    run(body)


def test_broker_refusal_fails_the_send_and_frees_the_slot() -> None:
    async def body() -> None:
        wire = Wire(pubacks=True)
        outbox = Outbox(wire)
        refused = outbox.send("c1", text("a"))
        later = outbox.send("c1", text("b"))
        wire.pubacks[0].set_exception(PublishRefused("not authorized"))
        await settle()
        with pytest.raises(PublishRefused):
            await refused
        assert wire.ids() == ["a", "b"]
        assert not later.done()

    run(body)


def test_lost_connection_keeps_the_send_for_a_resend() -> None:
    async def body() -> None:
        wire = Wire(pubacks=True)
        outbox = Outbox(wire)
        future = outbox.send("c1", text("a"))
        wire.pubacks[0].set_exception(MqttError("disconnected"))
        await settle()
        assert not future.done()
        assert outbox.resend_all() == 1

    run(body)


def test_a_failing_publish_keeps_the_send_in_flight() -> None:
    async def body() -> None:
        calls: list[bytes] = []

        def offline(_conv_id: str, payload: bytes) -> asyncio.Future[None] | None:
            calls.append(payload)
            raise MqttError("not connected")

        outbox = Outbox(offline)
        future = outbox.send("c1", text("a"))
        assert [p.client_msg_id for p in outbox.in_flight("c1")] == ["a"]
        assert outbox.resend_all() == 1
        assert len(calls) == 2
        outbox.on_ack(stored("c1", "a", 1))
        assert (await future).seq == 1

    run(body)


def test_close_fails_unsettled_sends() -> None:
    async def body() -> None:
        outbox = Outbox(Wire())
        flying = outbox.send("c1", text("a"))
        waiting = outbox.send("c1", text("b"))
        outbox.close()
        for future in (flying, waiting):
            with pytest.raises(OutboxClosed):
                await future
        with pytest.raises(OutboxClosed):
            outbox.send("c1", text("c"))

    run(body)


def test_generated_ids_match_the_contract() -> None:
    ids = {new_client_msg_id() for _ in range(100)}
    assert len(ids) == 100
    for client_msg_id in ids:
        SendMessage(client_msg_id=client_msg_id, kind="text", text="x")  # validates the pattern


def test_max_in_flight_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_in_flight"):
        Outbox(Wire(), max_in_flight=0)


def test_resend_only_failed_skips_sends_that_reached_the_wire() -> None:
    async def body() -> None:
        connected = False
        wire = Wire()

        def publish(conv_id: str, payload: bytes) -> asyncio.Future[None] | None:
            if not connected:
                raise MqttError("not connected")
            return wire(conv_id, payload)

        outbox = Outbox(publish)
        outbox.send("c1", text("early"))  # before the first connect: raises
        connected = True
        outbox.send("c2", text("on-time"))  # published fine
        assert outbox.resend_all(only_failed=True) == 1
        assert wire.ids() == ["on-time", "early"]

    run(body)


@pytest.mark.anyio
async def test_a_send_with_no_ack_is_published_again_after_the_timeout() -> None:
    published: list[bytes] = []
    outbox = Outbox(lambda _conv, payload: published.append(payload) or None)
    future = outbox.send("c1", SendMessage(client_msg_id="m1", kind="text", text="hi"))
    [sent] = outbox.in_flight()
    assert outbox.resend_overdue(5.0, now=sent.published_at + 4.9) == 0
    assert outbox.resend_overdue(5.0, now=sent.published_at + 5.0) == 1
    assert published == [published[0], published[0]]  # the same bytes, the same id
    outbox.on_ack(Ack(client_msg_id="m1", conv_id="c1", status="duplicate", id="x", seq=1))
    assert future.done() and outbox.resend_overdue(0.0) == 0
