"""The features the design needs from any broker, each checked from a client's
side with the target's own account (docs/brokers.md lists why each matters).

A check returns a `Result`; the errors a broker can cause (`ProbeError`, a
timeout) are turned into a failure with its reason by the runner, so a check
only states what it expects.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from bridge.mqtt import Will
from tools.brokers.context import ARRIVAL, QUIET, ProbeContext, Result
from tools.brokers.probe_client import (
    MQTT5,
    MQTT311,
    ConnectionLost,
    ConnectRefused,
    Message,
    ProbeClient,
    PublishRefused,
)

# The wire contract's largest payload (docs/protocol.md): must get through.
CONTRACT_PAYLOAD = 64 * 1024
SHARED_MESSAGES = 20
# A persistent session that outlives a short disconnect, not the probe.
SESSION_EXPIRY = 300
SYS_WAIT = 3.0


def passed(feature: str, reason: str) -> Result:
    return Result(feature, "pass", reason)


def failed(feature: str, reason: str) -> Result:
    return Result(feature, "fail", reason)


async def forget_session(ctx: ProbeContext, client_id: str) -> None:
    """Connect once with a clean start and no expiry, so the broker drops what
    a persistent session left behind."""
    async with ctx.client("cleanup", client_id=client_id, clean_start=True):
        pass


async def mqtt5_connect(ctx: ProbeContext) -> Result:
    feature = "mqtt5"
    client = ctx.client("v5", protocol=MQTT5)
    try:
        connack = await client.connect()
    except ConnectRefused as exc:
        return failed(feature, f"CONNECT refused: {exc}")
    except ConnectionLost as exc:
        return failed(feature, f"no MQTT 5 session: {exc}")
    await client.close()
    limits = ", ".join(f"{k}={v}" for k, v in sorted(connack.properties.items()))
    return passed(feature, f"CONNACK properties: {limits or 'none'}")


async def mqtt311_connect(ctx: ProbeContext) -> bool:
    """Whether the broker takes MQTT 3.1.1 (the fallback for the other checks)."""
    try:
        async with ctx.client("v311", protocol=MQTT311):
            return True
    except (ConnectRefused, ConnectionLost):
        return False


async def login(ctx: ProbeContext) -> Result:
    feature = "login"
    async with ctx.client("login"):
        pass
    try:
        async with ctx.client("intruder", password=ctx.target.password + "-wrong"):
            return failed(feature, "a wrong password was accepted")
    except ConnectRefused as exc:
        return passed(feature, f"right password accepted; wrong one refused ({exc})")
    except ConnectionLost as exc:
        return passed(feature, f"right password accepted; wrong one: connection closed ({exc})")


async def round_trip(ctx: ProbeContext, publisher: ProbeClient, subscriber: ProbeClient) -> int:
    """Publish at QoS 1 and return the QoS the subscriber got it at."""
    topic = ctx.topic("rt", subscriber.endpoint.transport)
    codes = await subscriber.subscribe([(topic, 1)])
    if codes[0] >= 0x80:
        raise ConnectRefused(f"SUBSCRIBE {topic} refused ({codes[0]:#x})")
    await publisher.publish(topic, b"ping", qos=1)
    return (await subscriber.wait_for(topic, ARRIVAL)).qos


async def websocket(ctx: ProbeContext) -> Result:
    feature = "websocket"
    if ctx.target.ws_port is None:
        return Result(feature, "n/a", "no WebSocket listener")
    async with ctx.client("ws", transport="websockets") as ws, ctx.client("tcp") as tcp:
        qos = await round_trip(ctx, ws, tcp)
        await round_trip(ctx, tcp, ws)
    return passed(feature, f"{ctx.target.ws_path}: publish and receive both ways (QoS {qos})")


async def qos1(ctx: ProbeContext) -> Result:
    feature = "qos1"
    async with ctx.client("pub") as publisher, ctx.client("sub") as subscriber:
        qos = await round_trip(ctx, publisher, subscriber)
    if qos != 1:
        return failed(feature, f"PUBACK received, but delivered at QoS {qos}")
    return passed(feature, "PUBACK received; delivered at QoS 1")


async def wildcards(ctx: ProbeContext) -> Result:
    feature = "wildcards"
    wanted = [ctx.topic("conv", "c1", "msg", "u1"), ctx.topic("user", "u1", "call", "current")]
    unwanted = [ctx.topic("conv", "c1", "read", "u1"), ctx.topic("user", "u2", "ack")]
    async with ctx.client("wild") as subscriber, ctx.client("pub") as publisher:
        codes = await subscriber.subscribe(
            [(ctx.topic("conv", "+", "msg", "+"), 1), (ctx.topic("user", "u1", "#"), 1)]
        )
        if any(code >= 0x80 for code in codes):
            return failed(feature, f"SUBSCRIBE refused: {codes}")
        for topic in [*unwanted, *wanted]:
            await publisher.publish(topic, b"w", qos=1)
        got = {message.topic for message in await subscriber.drain(QUIET)}
    if got != set(wanted):
        return failed(feature, f"expected {len(wanted)} topics, got {sorted(got)}")
    return passed(feature, "`+` and `#` filters match exactly the project's topic shapes")


async def offline_queue(ctx: ProbeContext) -> Result:
    feature = "offline_queue"
    client_id = ctx.client_id("persistent")
    topic = ctx.topic("queue")

    def persistent() -> ProbeClient:
        return ctx.client(
            "persistent", client_id=client_id, clean_start=False, session_expiry=SESSION_EXPIRY
        )

    async with persistent() as subscriber:
        await subscriber.subscribe([(topic, 1)])
    async with ctx.client("pub") as publisher:
        for index in range(3):
            await publisher.publish(topic, f"q{index}".encode(), qos=1)
    subscriber = persistent()
    connack = await subscriber.connect()
    try:
        got = [m.payload.decode() for m in await subscriber.drain(QUIET * 2)]
    finally:
        await subscriber.close()
    await forget_session(ctx, client_id)
    if not connack.session_present:
        return failed(feature, f"session not kept (session present = 0); got {got}")
    if got != ["q0", "q1", "q2"]:
        return failed(feature, f"session kept, but queued QoS 1 messages: {got}")
    return passed(feature, "session present on reconnect; 3 QoS 1 messages queued, in order")


async def redelivery(ctx: ProbeContext) -> Result:
    feature = "redelivery"
    client_id = ctx.client_id("acker")
    topic = ctx.topic("redeliver")

    def acker() -> ProbeClient:
        return ctx.client(
            "acker",
            client_id=client_id,
            clean_start=False,
            session_expiry=SESSION_EXPIRY,
            manual_ack=True,
        )

    first = acker()
    await first.connect()
    try:
        await first.subscribe([(topic, 1)])
        async with ctx.client("pub") as publisher:
            await publisher.publish(topic, b"work", qos=1)
        await first.wait_for(topic, ARRIVAL)
        # No PUBACK: the "service" dies before committing.
        first.drop()
        await asyncio.wait_for(first.disconnected.wait(), ARRIVAL)
    finally:
        await first.close()
    second = acker()
    await second.connect()
    try:
        again = await second.wait_for(topic, ARRIVAL)
        second.ack(again)
    except TimeoutError:
        return failed(feature, "a QoS 1 message received but not acknowledged was lost")
    finally:
        await second.close()
        await forget_session(ctx, client_id)
    return passed(feature, f"delivered again after reconnect (DUP flag {int(again.dup)})")


async def shared_subscription(ctx: ProbeContext) -> Result:
    feature = "shared"
    topic = ctx.topic("work")
    shared = f"$share/{ctx.prefix.replace('/', '-')}/{topic}"
    async with (
        ctx.client("member1") as one,
        ctx.client("member2") as two,
        ctx.client("pub") as publisher,
    ):
        for member in (one, two):
            codes = await member.subscribe([(shared, 1)])
            if codes[0] >= 0x80:
                return failed(
                    feature,
                    f"SUBSCRIBE $share/<group>/<filter> refused (reason code {codes[0]:#x})",
                )
        for index in range(SHARED_MESSAGES):
            await publisher.publish(topic, str(index).encode(), qos=1)
        got_one, got_two = await asyncio.gather(one.drain(QUIET * 2), two.drain(QUIET * 2))
    counts = Counter(m.payload for m in [*got_one, *got_two] if m.topic == topic)
    twice = sum(1 for n in counts.values() if n > 1)
    missing = SHARED_MESSAGES - len(counts)
    split = f"{len(got_one)} + {len(got_two)}"
    if twice:
        return failed(feature, f"{twice} of {SHARED_MESSAGES} messages reached both members")
    if missing == SHARED_MESSAGES:
        return failed(
            feature,
            "SUBSCRIBE $share/<group>/<filter> granted, but taken as a plain filter: "
            "nothing delivered",
        )
    if missing:
        return failed(
            feature, f"{missing} of {SHARED_MESSAGES} messages never delivered (split {split})"
        )
    if not got_one or not got_two:
        return failed(feature, f"each message once, but no split between members ({split})")
    return passed(feature, f"{SHARED_MESSAGES} messages split {split}, each delivered once")


async def late_retained(ctx: ProbeContext, topic_filter: str, topic: str) -> Message | None:
    """What a subscriber that comes after the retained publish gets on `topic`."""
    async with ctx.client("late") as late:
        await late.subscribe([(topic_filter, 1)])
        try:
            return await late.wait_for(topic, ARRIVAL)
        except TimeoutError:
            return None


async def retained(ctx: ProbeContext) -> Result:
    """Retained state reaches late subscribers of the exact topic and of
    wildcard filters: the presence tracker subscribes `presence/+/+` and a
    device `user/<id>/#`, and both rely on the replay."""
    feature = "retained"
    topic = ctx.topic("svc", "status")
    async with ctx.client("pub") as publisher:
        await publisher.publish(topic, b"online", qos=1, retain=True)
        exact = await late_retained(ctx, topic, topic)
        wildcard = await late_retained(ctx, ctx.topic("svc", "+"), topic)
        await publisher.publish(topic, b"", qos=1, retain=True)
        async with ctx.client("later") as later:
            await later.subscribe([(topic, 1)])
            leftover = await later.drain(QUIET)
    if exact is None or exact.payload != b"online" or not exact.retain:
        return failed(feature, f"a late subscriber to the topic got {exact}")
    if wildcard is None:
        return failed(feature, "exact topic replayed; a late wildcard subscriber got nothing")
    if leftover:
        return failed(feature, "an empty retained publish did not clear the retained message")
    return passed(
        feature, "replayed to late subscribers (exact topic and `+` filter); empty payload clears"
    )


async def last_will(ctx: ProbeContext) -> Result:
    feature = "will"
    topic = ctx.topic("svc", "will")
    will = Will(topic, b"offline", qos=1, retain=True)
    async with ctx.client("watcher") as watcher:
        await watcher.subscribe([(topic, 1)])
        async with ctx.client("mortal", will=will) as mortal:
            started = time.monotonic()
            mortal.drop()
            try:
                message = await watcher.wait_for(topic, ARRIVAL * 2)
            except TimeoutError:
                return failed(feature, f"no Last Will within {ARRIVAL * 2:.0f} s of the drop")
        elapsed = (time.monotonic() - started) * 1000
        async with ctx.client("pub") as publisher:
            await publisher.publish(topic, b"", qos=1, retain=True)
    if message.payload != b"offline":
        return failed(feature, f"got {message.payload!r} instead of the Last Will")
    return passed(feature, f"published {elapsed:.0f} ms after the connection dropped")


async def takeover(ctx: ProbeContext) -> Result:
    feature = "takeover"
    client_id = ctx.client_id("twin")
    async with ctx.client("twin", client_id=client_id) as first:
        try:
            async with ctx.client("twin", client_id=client_id) as second:
                try:
                    await asyncio.wait_for(first.disconnected.wait(), ARRIVAL)
                except TimeoutError:
                    return failed(feature, "both connections with one client id stay open")
                if not second.connected.is_set():
                    return failed(feature, "the second connection was closed too")
        except ConnectRefused as exc:
            return failed(feature, f"second connection refused: {exc}")
    return passed(feature, f"the first connection was closed ({first.disconnect_reason})")


async def sys_topics(ctx: ProbeContext) -> Result:
    feature = "sys"
    async with ctx.client("sys") as client:
        codes = await client.subscribe([("$SYS/#", 0)])
        if codes[0] >= 0x80:
            return failed(feature, f"SUBSCRIBE $SYS/# refused ({codes[0]:#x})")
        try:
            first = await client.next_message(SYS_WAIT)
        except TimeoutError:
            return failed(feature, f"no $SYS message within {SYS_WAIT:.0f} s")
        others = await client.drain(QUIET)
    return passed(feature, f"{len(others) + 1} at once on subscribing, e.g. {first.topic}")


async def max_packet_size(ctx: ProbeContext) -> Result:
    feature = "max_packet"
    limit = ctx.target.max_packet_size
    oversize = 4 * limit
    topic = ctx.topic("big")
    async with ctx.client("big-sub") as subscriber:
        await subscriber.subscribe([(topic, 1)])
        async with ctx.client("big-pub") as publisher:
            await publisher.publish(topic, b"x" * CONTRACT_PAYLOAD, qos=1)
        try:
            await subscriber.wait_for(topic, ARRIVAL)
        except TimeoutError:
            return failed(feature, f"a {CONTRACT_PAYLOAD // 1024} KiB payload was not delivered")
        async with ctx.client("huge-pub") as publisher:
            try:
                await publisher.publish(topic, b"x" * oversize, qos=1)
                outcome = "PUBACK"
            except PublishRefused as exc:
                outcome = f"refused ({exc})"
            except ConnectionLost as exc:
                outcome = f"connection closed ({exc})"
        delivered = await subscriber.drain(QUIET * 2)
    if delivered:
        return failed(feature, f"{oversize // 1024} KiB delivered: no packet limit ({outcome})")
    return passed(
        feature,
        f"{CONTRACT_PAYLOAD // 1024} KiB delivered; {oversize // 1024} KiB cut: {outcome}",
    )
