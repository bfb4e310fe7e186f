"""Latency and throughput figures of the whole system: `python -m tools.bench`.

`./chat bench` runs this. It prints figures and asserts nothing. In one run:
1. the raw broker hop (the floor): service account to service account over
   TCP and WebSocket, no service in the path;
2. a Socket.IO 4 relay (Node, stores nothing: the plain design), measured the
   same way with python-socketio clients (tools/bench_socketio.py);
3. the full path per database: a device publishes a send, the persistence
   service stores it and delivers it, another user's device receives it;
4. the highest sustained rate per database (a ramp), and a blast's delivered/s;
5. call signaling per database: invite to the callee's `incoming`, beside the
   raw hop measured the same way (tools/bench_calls.py);
6. push per database: stored message to the Expo request, and a burst to
   10,000 offline recipients (tools/bench_push.py);
7. support per database: ticket opened to the user's `assigned`, with
   operators online (tools/bench_tickets.py).

The first three are printed side by side at each paced rate, with the full
path's ratios over the raw hop and over the Socket.IO relay.

Every latency is measured in this one process (publish call to arrival at the
receiving client's asyncio side, both with `time.perf_counter()`), so clocks
agree. Load is open loop: sends follow a schedule and never wait for PUBACKs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import sys
import time
import traceback
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import httpx

from bridge import topics
from bridge.mqtt import AsyncMqtt, Endpoint, Inbound
from bridge.topics import UpKind
from tools.bench_calls import print_calls, run_calls
from tools.bench_push import print_push, run_push
from tools.bench_socketio import RelayLoad, run_socketio
from tools.bench_support import (
    HEADER,
    TEXT,
    Board,
    Phase,
    Result,
    anchor_rows,
    measure_phase,
    running_stack,
    side_by_side,
    table_row,
    ws_endpoint,
)
from tools.bench_tickets import print_tickets, run_tickets
from tools.stack import Stack

PASSWORD = "bench-password-1"
P99_LIMIT_MS = 50.0
T = TypeVar("T")


@dataclass(frozen=True)
class Options:
    dbs: tuple[str, ...]
    rates: tuple[int, ...]
    messages: int
    transport: str
    instances: int
    pairs: int
    ramp: tuple[int, ...]
    ramp_seconds: float
    blast: int
    warmup: int
    drain_seconds: float
    skip: frozenset[str]
    acks: bool


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__)
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--rates", default="100,500", help="paced rates, msg/s (comma list)")
    parser.add_argument(
        "--messages", type=int, default=None, help="per paced rate (2000; 200 with --quick)"
    )
    parser.add_argument(
        "--transport",
        choices=["ws", "tcp"],
        default="ws",
        help="transport of the devices on the full path",
    )
    parser.add_argument("--instances", type=int, default=1, help="persistence instances")
    parser.add_argument("--pairs", type=int, default=10, help="sender/receiver conversations")
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument(
        "--skip",
        default="",
        help="parts to leave out: raw,socketio,full,ramp,blast,calls,push,support",
    )
    parser.add_argument("--blast", type=int, default=None, help="blast size (5000; 500 quick)")
    parser.add_argument(
        "--acks",
        action="store_true",
        help="senders also tally their acks (explains losses; costs the load generator CPU)",
    )
    args = parser.parse_args(argv)
    quick: bool = args.quick
    return Options(
        dbs=("sqlite", "postgresql") if args.db == "both" else (args.db,),
        rates=tuple(int(r) for r in args.rates.split(",") if r.strip()),
        messages=args.messages or (200 if quick else 2000),
        transport=args.transport,
        instances=args.instances,
        pairs=args.pairs,
        ramp=(250, 500) if quick else (250, 500, 750, 1000, 1500, 2000, 2500, 3000, 4000),
        ramp_seconds=1.0 if quick else 3.0,
        blast=args.blast or (500 if quick else 5000),
        warmup=50 if quick else 300,
        drain_seconds=5.0 if quick else 10.0,
        skip=frozenset(part.strip() for part in args.skip.split(",") if part.strip()),
        acks=args.acks,
    )


# --- one measured phase ----------------------------------------------------------------------


@dataclass(frozen=True)
class Lane:
    """One sending connection and the topic its messages go to."""

    client: AsyncMqtt
    topic: str


def body(client_msg_id: str) -> bytes:
    return json.dumps({"client_msg_id": client_msg_id, "kind": "text", "text": TEXT}).encode()


async def consume(
    client: AsyncMqtt, board: Board, wanted: frozenset[str], ack_topics: frozenset[str]
) -> None:
    """Stamp every wanted arrival (before parsing it) and tally acks."""
    while True:
        message = await client.next_message()
        now = time.perf_counter()
        tracker = board.current
        if tracker is None:
            continue
        if message.topic in wanted:
            data = json.loads(message.payload)
            tracker.mark_received(data["client_msg_id"], now, data.get("conv_id"), data.get("seq"))
        elif message.topic in ack_topics:
            tracker.acks[_ack_key(message)] += 1


def _ack_key(message: Inbound) -> str:
    ack = json.loads(message.payload)
    if ack.get("status") == "rejected":
        return f"rejected:{(ack.get('error') or {}).get('code')}"
    return str(ack.get("status"))


async def measure(
    lanes: Sequence[Lane],
    board: Board,
    name: tuple[str, str],
    rate: int | None,
    count: int,
    drain_seconds: float,
) -> Result:
    """Send `count` messages round-robin over the lanes at `rate` (None: blast),
    each at QoS 1, never waiting for its PUBACK before the next."""
    label, transport = name

    def prepare(index: int, client_msg_id: str) -> Callable[[], asyncio.Future[None]]:
        lane = lanes[index % len(lanes)]
        return partial(lane.client.publish, lane.topic, body(client_msg_id), qos=1)

    phase = Phase(label, transport, rate, count, drain_seconds)
    return await measure_phase(board, phase, prepare, "publishes not acknowledged by the broker")


async def warm_up(lanes: Sequence[Lane], board: Board, options: Options) -> None:
    """Connections, caches and the database pool warm, off the books."""
    await measure(lanes, board, ("warm-up (discarded)", "-"), 200, options.warmup, 5.0)


async def connect(
    exits: contextlib.AsyncExitStack, endpoint: Endpoint, client_id: str, user: str, pw: str
) -> AsyncMqtt:
    # A clean, non-persistent session: nothing of a bench run lingers in the broker.
    client = AsyncMqtt(
        endpoint,
        client_id=client_id,
        username=user,
        password=pw,
        clean_start=True,
        session_expiry=0,
    )
    return await exits.enter_async_context(client)


async def subscribe(client: AsyncMqtt, topic_filter: str, qos: int = 1) -> None:
    granted = await client.subscribe([(topic_filter, qos)])
    if any(code >= 0x80 for code in granted):
        raise RuntimeError(f"{client.client_id}: subscription to {topic_filter} refused {granted}")


def spawn(tasks: list[asyncio.Task[None]], coro: Coroutine[Any, Any, None]) -> None:
    tasks.append(asyncio.get_running_loop().create_task(coro))


async def cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def stack_pids(stack: Stack) -> dict[str, int]:
    return {name: process.pid for name, process in stack.processes.items()}


# --- 1. the raw broker hop ---------------------------------------------------------------------


def raw_endpoint(stack: Stack, transport: str) -> Endpoint:
    if transport == "tcp":
        return Endpoint("127.0.0.1", stack.config.tcp_port, "tcp")
    return Endpoint("127.0.0.1", stack.config.ws_port, "websockets")


async def raw_hop(stack: Stack, transport: str, options: Options) -> list[Result]:
    accounts = stack.config.accounts
    run = secrets.token_hex(4)
    # A bench-only topic, deliberately not in bridge/topics.py: it is no part of
    # the contract. The service role may publish and subscribe anywhere under `#`.
    topic = f"svc/bench/{run}/raw"
    endpoint = raw_endpoint(stack, transport)
    user, pw = accounts.service_username, accounts.service_password
    tasks: list[asyncio.Task[None]] = []
    async with contextlib.AsyncExitStack() as exits:
        publisher = await connect(exits, endpoint, f"bench-pub-{run}", user, pw)
        subscriber = await connect(exits, endpoint, f"bench-sub-{run}", user, pw)
        await subscribe(subscriber, topic)
        board = Board(stack_pids(stack))
        spawn(tasks, consume(subscriber, board, frozenset({topic}), frozenset()))
        try:
            lanes = [Lane(publisher, topic)]
            await warm_up(lanes, board, options)
            name = (f"raw hop ({transport})", transport)
            results = [
                await measure(lanes, board, name, rate, options.messages, options.drain_seconds)
                for rate in options.rates
            ]
            if transport == options.transport and "blast" not in options.skip:
                blast = (f"raw blast ({transport})", transport)
                results.append(await measure(lanes, board, blast, None, options.blast, 30))
        finally:
            await cancel_all(tasks)
    return results


# --- 2. and 3. the full path --------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    user_id: str
    token: str
    mqtt: dict[str, Any]


@dataclass(frozen=True)
class Pair:
    sender: Member
    receiver: Member
    conv_id: str


class ServiceError(RuntimeError):
    """The API answered a well-formed request with an error: a finding, not a bench bug."""


async def post(
    http: httpx.AsyncClient, path: str, payload: dict[str, Any], token: str | None = None
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await http.post(path, json=payload, headers=headers)
    if response.status_code not in (200, 201):
        raise ServiceError(f"POST {path} {payload} -> {response.status_code} {response.text}")
    answer: dict[str, Any] = response.json()
    return answer


async def member(http: httpx.AsyncClient, username: str) -> Member:
    session = await post(
        http,
        "/v1/auth/register",
        {"username": username, "password": PASSWORD, "display_name": username},
    )
    token = session["access_token"]
    device = await post(http, "/v1/devices", {"platform": "web"}, token)
    return Member(session["user_id"], token, device["mqtt"])


async def make_pair(http: httpx.AsyncClient, run: str, index: int) -> Pair:
    sender, receiver = await asyncio.gather(
        member(http, f"bench_{run}_s{index}"), member(http, f"bench_{run}_r{index}")
    )
    conv = await post(http, "/v1/conversations", {"member_ids": [receiver.user_id]}, sender.token)
    return Pair(sender, receiver, conv["conv_id"])


def device_endpoint(mqtt: dict[str, Any], transport: str) -> Endpoint:
    if transport == "tcp":
        return Endpoint(mqtt["tcp_host"], int(mqtt["tcp_port"]), "tcp")
    return ws_endpoint(mqtt["ws_url"])


async def connect_device(
    exits: contextlib.AsyncExitStack, who: Member, transport: str
) -> AsyncMqtt:
    creds = who.mqtt
    endpoint = device_endpoint(creds, transport)
    return await connect(exits, endpoint, creds["client_id"], creds["username"], creds["password"])


async def full_path(stack: Stack, kind: str, options: Options) -> list[Result]:
    run = secrets.token_hex(3)
    async with httpx.AsyncClient(base_url=stack.config.api_url, timeout=60) as http:
        pairs = await asyncio.gather(*(make_pair(http, run, i) for i in range(options.pairs)))
    tasks: list[asyncio.Task[None]] = []
    async with contextlib.AsyncExitStack() as exits:
        board = Board(stack_pids(stack))
        lanes = []
        for pair in pairs:
            sender = await connect_device(exits, pair.sender, options.transport)
            receiver = await connect_device(exits, pair.receiver, options.transport)
            if options.acks:
                await tally_acks(sender, pair.sender, board, tasks)
            await subscribe(receiver, topics.user_root(pair.receiver.user_id))
            down = topics.user_conv(pair.receiver.user_id, pair.conv_id, UpKind.MSG)
            spawn(tasks, consume(receiver, board, frozenset({down}), frozenset()))
            lanes.append(
                Lane(sender, topics.conv_up(pair.conv_id, UpKind.MSG, pair.sender.user_id))
            )
        try:
            return await measure_full_path(lanes, board, kind, options)
        finally:
            await cancel_all(tasks)


async def tally_acks(
    sender: AsyncMqtt, who: Member, board: Board, tasks: list[asyncio.Task[None]]
) -> None:
    """Senders hear their acks: a rejection code explains a loss.

    Off by default: every ack is one more inbound message for this one process,
    which on a small machine competes with the services for CPU. QoS 0 keeps it
    as cheap as it can be.
    """
    ack_topic = topics.user_ack(who.user_id)
    await subscribe(sender, ack_topic, qos=0)
    spawn(tasks, consume(sender, board, frozenset(), frozenset({ack_topic})))


async def measure_full_path(
    lanes: list[Lane], board: Board, kind: str, options: Options
) -> list[Result]:
    await warm_up(lanes, board, options)
    name = (f"stored+delivered {kind}", options.transport)
    results = [
        await measure(lanes, board, name, rate, options.messages, options.drain_seconds)
        for rate in options.rates
    ]
    if "ramp" not in options.skip:
        results += await ramp(lanes, board, kind, options)
    if "blast" in options.skip:
        return results
    blast_name = (f"blast {kind} ({options.blast})", options.transport)
    results.append(await measure(lanes, board, blast_name, None, options.blast, 60))
    return results


def sustained(result: Result) -> bool:
    return result.lost == 0 and result.p99 < P99_LIMIT_MS


async def ramp(lanes: list[Lane], board: Board, kind: str, options: Options) -> list[Result]:
    """Step the rate up until p99 passes the limit or a message goes missing.

    Returns the best step that held ("sustained") and the first that did not.
    """
    best: Result | None = None
    for rate in options.ramp:
        count = int(rate * options.ramp_seconds)
        name = (f"ramp {kind}", options.transport)
        # A long drain: a step that falls behind shows its real latency, late is not lost.
        drain = max(options.drain_seconds, 30.0)
        step = await measure(lanes, board, name, rate, count, drain)
        step.rate = f"{rate}/s"
        if not sustained(step):
            step.label = f"first miss {kind}"
            if best is None:
                step.notes.append("not even the ramp's first step held")
                return [step]
            return [best, step]
        step.label = f"sustained {kind}"
        best = step
    return [] if best is None else [best]


# --- the run ----------------------------------------------------------------------------------


def run_raw(options: Options) -> list[Result]:
    print("== raw broker hop (service account, no service in the path)", flush=True)
    results: list[Result] = []
    with running_stack("sqlite", 1) as stack:
        for transport in ("tcp", "ws"):
            results += asyncio.run(raw_hop(stack, transport, options))
    return results


def run_full(kind: str, options: Options) -> list[Result]:
    print(
        f"== stored+delivered on {kind} ({options.instances} persistence instance(s), "
        f"{options.pairs} conversations, devices over {options.transport})",
        flush=True,
    )
    with running_stack(kind, options.instances) as stack:
        return asyncio.run(full_path(stack, kind, options))


def raw_p50(raw: list[Result], transport: str, rate: int) -> float | None:
    """The floor to compare with: the raw hop at this rate, else its highest paced rate."""
    paced_rows = [r for r in raw if r.transport == transport and r.rate_value > 0]
    same = [r for r in paced_rows if r.rate_value == rate]
    pick = same or sorted(paced_rows, key=lambda r: r.rate_value)[-1:]
    return pick[0].p50 if pick else None


def print_table(
    raw: list[Result],
    relay: list[Result],
    full: list[Result],
    failures: list[str],
    options: Options,
) -> None:
    print()
    print(HEADER)
    print("-" * len(HEADER))
    for result in [*raw, *relay, *full]:
        print(table_row(result, raw_p50(raw, result.transport, result.rate_value)))
    for line in anchor_rows():
        print(line)
    print(
        "x raw p50: p50 over the raw hop's p50 (same transport, same rate or its highest); "
        "svc us/msg: CPU the persistence service spent per message; other load: cores kept "
        "busy by processes outside this run during the phase (the machine is shared)"
    )
    print()
    for line in side_by_side(raw, relay, full, options.transport, options.rates):
        print(line)
    print()
    results = [*raw, *relay, *full]
    notes = [f"{r.label} @ {r.rate}: {'; '.join(r.notes)}" for r in results if r.notes]
    for line in [*notes, *failures]:
        print("note: " + line)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    print(
        f"bench: {os.cpu_count()} cpus, {options.messages} msgs per rate, rates "
        f"{list(options.rates)}, 150-byte text, QoS 1; sustained = p99 < {P99_LIMIT_MS:.0f} ms "
        f"and nothing lost; load average at start {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    failures: list[str] = []

    def attempt(part: str, label: str, measure: Callable[[], list[T]]) -> list[T]:
        """One part of the run (unless skipped); one that fails is reported and
        the others still run."""
        if part in options.skip:
            return []
        try:
            return measure()
        except Exception as exc:
            traceback.print_exc()
            failures.append(f"{label} failed: {exc!r}")
            return []

    raw = attempt("raw", "raw hop", partial(run_raw, options))
    load = RelayLoad(
        options.rates, options.messages, options.pairs, options.warmup, options.drain_seconds
    )
    relay = attempt("socketio", "socket.io relay", partial(run_socketio, load))
    full: list[Result] = []
    for kind in options.dbs:
        full += attempt("full", f"{kind} full path", partial(run_full, kind, options))
    messages = options.messages
    calls = attempt("calls", "call signaling", partial(run_calls, options.dbs, min(messages, 1000)))
    pushes = attempt("push", "push", partial(run_push, options.dbs, min(messages, 200)))
    tickets = attempt("support", "support", partial(run_tickets, options.dbs, min(messages, 500)))
    print_table(raw, relay, full, failures, options)
    print_calls(calls)
    print_push(pushes)
    print_tickets(tickets)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
