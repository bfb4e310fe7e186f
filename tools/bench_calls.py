"""Call signaling latency: invite published → callee's device receives `incoming`
(with its LiveKit token), beside the raw broker hop measured the same way.

Paced: several caller/callee pairs each place one call at a time (invite, wait
for `incoming`, hang up, wait for `cancelled`), together starting `rate` calls
a second, spread evenly, so the service sees a steady flow of real calls (each
call is two transitions, with events, retained state and push notices). The
raw hop is a ping between two connections on the same broker, one message in
flight, over the same transport; back to back, and paced at each call rate
through the devices' gateway, as the calls go. Paced is the fair floor: every
process in the path is idle between calls, and on a virtual machine an idle
process's code and data leave the processor's caches (measured here: a SQLite
invite took 0.3 ms back to back and 1.3 ms after 20 ms idle).

Between the two, the floor of a service in the path (tools/bench_floor.py): a
ping through a service on the project's own runtime that only answers, and one
that first commits one row to the database. The same hops and pacing as a call,
so invite → `incoming` minus the second is what call signaling itself costs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx

from bridge import topics
from bridge.mqtt import AsyncMqtt, Endpoint
from bridge.topics import CallAction
from core.timefmt import to_wire, utcnow
from tools import bench_floor
from tools.bench_support import (
    device_connection,
    percentile,
    register_with_device,
    running_stack,
)
from tools.stack import PROJECT_DIR, Stack

# The old app polled for calls every 3 s (1.5 s mean wait); its plan called 50 ms instant.
ANCHOR_POLL_MEAN_MS = 1500.0
ANCHOR_PLAN_MS = 50.0
PACED_PINGS = 300
WARM_UP_PINGS = 20  # the first pings of a series warm the connections, untimed


@dataclass(frozen=True)
class CallFigures:
    label: str
    latencies_ms: list[float]
    expected: int

    @property
    def p50(self) -> float:
        return percentile(self.latencies_ms, 50)

    @property
    def p99(self) -> float:
        return percentile(self.latencies_ms, 99)

    def row(self, floor: float | None) -> str:
        ratio = f"{self.p50 / floor:.1f}" if floor else "-"
        return (
            f"{self.label:<40}{self.p50:>9.2f}{self.p99:>9.2f}"
            f"{max(self.latencies_ms, default=float('nan')):>9.2f}"
            f"{f'{len(self.latencies_ms)}/{self.expected}':>11}{ratio:>10}"
        )


@dataclass
class Phone:
    user_id: str
    client: AsyncMqtt


async def _phone(exits: contextlib.AsyncExitStack, user_id: str, mqtt: dict[str, str]) -> Phone:
    client = device_connection(mqtt)
    await exits.enter_async_context(client)
    await client.subscribe([(topics.user_call(user_id), 1)])
    return Phone(user_id, client)


async def _next_event(phone: Phone, call_id: str, event: str) -> float:
    """Wait for `event` of `call_id`; returns its arrival time."""
    while True:
        message = await phone.client.next_message(10)
        arrived = time.perf_counter()
        body = json.loads(message.payload)
        if body.get("call_id") == call_id and body.get("event") == event:
            return arrived


async def _caller_loop(
    caller: Phone, callee: Phone, calls: int, out: list[float], interval: float, offset: float
) -> None:
    # Pairs start `offset` apart, so the calls are spread, not fired in bursts.
    next_start = time.perf_counter() + offset
    for _ in range(calls):
        await asyncio.sleep(max(0.0, next_start - time.perf_counter()))
        next_start += interval
        call_id = secrets.token_urlsafe(9)
        invite = json.dumps({"to": callee.user_id, "media": "audio"}).encode()
        sent = time.perf_counter()
        acked = caller.client.publish(
            topics.call_up(call_id, CallAction.INVITE, caller.user_id), invite
        )
        out.append((await _next_event(callee, call_id, "incoming") - sent) * 1000)
        await acked  # after the timing: left pending, closing would fail it
        hangup = topics.call_up(call_id, CallAction.HANGUP, caller.user_id)
        acked = caller.client.publish(hangup, b"{}")
        await _next_event(callee, call_id, "cancelled")
        await acked


async def measure_calls(
    stack: Stack, kind: str, calls: int, pairs: int, rate: float
) -> CallFigures:
    run = secrets.token_hex(3)
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=stack.config.api_url, timeout=30) as http:
        people = []
        for index in range(pairs):
            a = await register_with_device(http, f"callbench_{run}_a{index}")
            b = await register_with_device(http, f"callbench_{run}_b{index}")
            await http.post(
                "/v1/conversations",
                json={"member_ids": [b[0]]},
                headers={"Authorization": f"Bearer {a[1]}"},
            )
            people.append((a, b))
        async with contextlib.AsyncExitStack() as exits:
            phones = [
                (await _phone(exits, a[0], a[2]), await _phone(exits, b[0], b[2]))
                for a, b in people
            ]
            interval = pairs / rate  # each pair's share of the rate
            spread = [(a, b, i * interval / pairs) for i, (a, b) in enumerate(phones)]
            warm: list[float] = []
            await asyncio.gather(*(_caller_loop(a, b, 5, warm, interval, o) for a, b, o in spread))
            per_pair = max(1, calls // pairs)
            await asyncio.gather(
                *(_caller_loop(a, b, per_pair, latencies, interval, o) for a, b, o in spread)
            )
    return CallFigures(
        f"invite -> incoming, {kind}, {rate:.0f} calls/s", latencies, per_pair * len(phones)
    )


async def _pings(
    stack: Stack, endpoint: Endpoint, out: tuple[str, str], count: int, rate: float | None
) -> list[float]:
    """One message at a time, `out` = (topic published, topic it comes back on),
    between two service-account connections on `endpoint`: back to back, or
    one every 1/`rate` s. Returns the round trips in ms."""
    accounts = stack.config.accounts
    run = secrets.token_hex(4)
    latencies: list[float] = []

    def connection(role: str) -> AsyncMqtt:
        return AsyncMqtt(
            endpoint,
            client_id=f"bench-{role}-{run}",
            username=accounts.service_username,
            password=accounts.service_password,
            clean_start=True,
            session_expiry=0,
        )

    sent_on, back_on = out
    async with connection("pub") as publisher, connection("sub") as subscriber:
        await subscriber.subscribe([(back_on, 1)])
        next_start = time.perf_counter()
        for index in range(count + WARM_UP_PINGS):
            if rate is not None:
                next_start += 1 / rate
                await asyncio.sleep(max(0.0, next_start - time.perf_counter()))
            sent = time.perf_counter()
            acked = publisher.publish(sent_on, f'{{"ping": {index}}}')
            await subscriber.next_message(10)
            if index >= WARM_UP_PINGS:
                latencies.append((time.perf_counter() - sent) * 1000)
            await acked  # after the timing: left pending, closing would fail it
    return latencies


def _gateway(stack: Stack) -> Endpoint:
    if stack.config.gateway_port is None:
        raise ValueError("this stack has no devices' gateway")
    return Endpoint("127.0.0.1", stack.config.gateway_port, "websockets")


async def measure_raw_ping(stack: Stack, count: int, rate: float | None = None) -> CallFigures:
    """The floor: one message at a time from one connection to another over
    WebSocket; back to back on the broker's own listener, or one every
    1/`rate` s through the devices' gateway."""
    topic = f"svc/bench/{secrets.token_hex(4)}/ping"  # bench-only, no part of the contract
    if rate is None:
        endpoint = Endpoint("127.0.0.1", stack.config.ws_port, "websockets")
        latencies = await _pings(stack, endpoint, (topic, topic), count, None)
        return CallFigures("raw hop (ws, one in flight)", latencies, count)
    latencies = await _pings(stack, _gateway(stack), (topic, topic), count, rate)
    return CallFigures(f"raw hop paced, gateway, {rate:.0f}/s", latencies, count)


@contextlib.contextmanager
def floor_service(stack: Stack, store: bool) -> Iterator[None]:
    """tools/bench_floor.py running against this stack, until the block ends."""
    log = (stack.log_dir / "bench_floor.log").open("ab")
    started = to_wire(utcnow())
    process = subprocess.Popen(
        [sys.executable, "-m", "tools.bench_floor"],
        cwd=PROJECT_DIR,
        env={**stack.env(), bench_floor.STORE_ENV: "1" if store else "0"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        stack.wait_online(bench_floor.SERVICE, "1", since=started, process=process)
        yield
    finally:
        process.terminate()
        process.wait(10)
        log.close()


async def measure_floor(
    stack: Stack, rate: float, stored_in: str | None, count: int = PACED_PINGS
) -> CallFigures:
    """A ping through the floor service, paced and through the gateway as the calls go."""
    run = secrets.token_hex(4)
    out = (bench_floor.ping_topic(run), bench_floor.answer_topic(run))
    latencies = await _pings(stack, _gateway(stack), out, count, rate)
    what = f"+ row in {stored_in}" if stored_in else "answers"
    return CallFigures(f"floor: service {what}, {rate:.0f}/s", latencies, count)


def run_calls(
    kinds: tuple[str, ...], calls: int, rates: tuple[float, ...] = (10, 50), pairs: int = 10
) -> list[CallFigures]:
    print("== calls: invite -> incoming (callee device, with its token)", flush=True)
    figures: list[CallFigures] = []
    for kind in kinds:
        with running_stack(kind, 1) as stack:
            if not figures:
                figures.append(asyncio.run(measure_raw_ping(stack, calls)))
                for rate in rates:
                    figures.append(asyncio.run(measure_raw_ping(stack, PACED_PINGS, rate)))
                with floor_service(stack, store=False):
                    for rate in rates:
                        figures.append(asyncio.run(measure_floor(stack, rate, None)))
            with floor_service(stack, store=True):
                for rate in rates:
                    figures.append(asyncio.run(measure_floor(stack, rate, kind)))
            for rate in rates:
                figures.append(asyncio.run(measure_calls(stack, kind, calls, pairs, rate)))
                print("  " + figures[-1].label, flush=True)
    return figures


def print_calls(figures: list[CallFigures]) -> None:
    if not figures:
        return
    print()
    print(f"{'call signaling':<40}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'got':>11}{'x raw':>10}")
    floor = figures[0].p50 if figures[0].label.startswith("raw") else None
    for figure in figures:
        print(figure.row(floor))
    print(
        "x raw: against the first row. Paced hops: one ping every 1/rate s through the"
        " devices' gateway, as the calls travel: the floor at that rate."
    )
    print(
        "floor: the same paced ping through a service on the project's runtime that only"
        " answers, or first commits one row (tools/bench_floor.py)."
    )
    print(f"{'anchor: old app polled calls every 3 s':<40}{ANCHOR_POLL_MEAN_MS:>9.0f}")
    print(f"{'anchor: its plan called this instant':<40}{ANCHOR_PLAN_MS:>9.0f}")
