"""Support routing latency: a ticket opened over HTTP -> the user's device
receives `assigned` on `user/{uid}/support`, with operators online.

One ticket at a time per user (several users, paced), so the figure is the
latency of the path, not a queue building up: the API commits the ticket and
wakes the router over the broker; the router reads the queue and the
operators, claims in one transaction, and publishes `assigned`. Beside it, in
the same run: the HTTP round trip of opening a ticket alone (the part of the
figure that is the API), and the old app's anchor (it polled support every 2 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from dataclasses import dataclass

import httpx

from api.operators import create_operator
from bridge import topics
from bridge.mqtt import AsyncMqtt
from chatclient import ChatClient, ChatHttp
from core.db import make_engine
from tools.bench_support import (
    BENCH_PASSWORD,
    device_connection,
    percentile,
    register_with_device,
    running_stack,
)
from tools.stack import Stack

ANCHOR_POLL_MEAN_MS = 1000.0  # polled every 2 s: 1 s mean wait
OPERATORS = 4


@dataclass(frozen=True)
class TicketFigures:
    kind: str
    assigned_ms: list[float]
    http_ms: list[float]
    expected: int

    def lines(self) -> list[str]:
        a, h = self.assigned_ms, self.http_ms
        p50 = percentile(a, 50)
        return [
            f"ticket opened -> assigned received, {self.kind}: p50 {p50:.2f} ms, "
            f"p99 {percentile(a, 99):.2f} ms, max {max(a, default=float('nan')):.2f} ms, "
            f"{len(a)}/{self.expected} assigned; x{ANCHOR_POLL_MEAN_MS / p50:.0f} faster than "
            f"the old 2 s polling ({ANCHOR_POLL_MEAN_MS:.0f} ms mean)",
            f"  of which the HTTP POST round trip alone: p50 {percentile(h, 50):.2f} ms, "
            f"p99 {percentile(h, 99):.2f} ms",
        ]


async def _operators(stack: Stack, exits: contextlib.AsyncExitStack, run: str) -> None:
    """Operators online and connected, with room for every ticket of the run."""
    engine = make_engine(stack.config.database_url)
    try:
        names = [f"agent_{run}_{index}" for index in range(OPERATORS)]
        for name in names:
            create_operator(
                engine, username=name, password=BENCH_PASSWORD, display_name=name, capacity=100_000
            )
    finally:
        engine.dispose()
    for name in names:
        http = await exits.enter_async_context(ChatHttp(stack.config.api_url))
        session = await http.login(name, BENCH_PASSWORD)
        creds = await http.create_device("web")
        await exits.enter_async_context(ChatClient(creds, session.user_id, http=http))
        await http.set_operator_status("online")


class Arrivals:
    """Stamps each `assigned` as it arrives: it may come before the HTTP answer
    that names the ticket, so it is looked up by ticket id afterwards."""

    def __init__(self, device: AsyncMqtt) -> None:
        self.device = device
        self.at: dict[str, float] = {}
        self.changed = asyncio.Event()

    async def read_forever(self) -> None:
        async for message in self.device.messages():
            arrived = time.perf_counter()
            body = json.loads(message.payload)
            if body.get("event") == "assigned":
                self.at[body["ticket_id"]] = arrived
                self.changed.set()

    async def wait(self, ticket_id: str, timeout: float = 10.0) -> float:
        async with asyncio.timeout(timeout):
            while ticket_id not in self.at:
                self.changed.clear()
                await self.changed.wait()
        return self.at.pop(ticket_id)


async def _customer_loop(
    http: httpx.AsyncClient,
    token: str,
    arrivals: Arrivals,
    count: int,
    interval: float,
    offset: float,
    assigned: list[float],
    round_trips: list[float],
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    next_start = time.perf_counter() + offset
    for index in range(count):
        await asyncio.sleep(max(0.0, next_start - time.perf_counter()))
        next_start += interval
        sent = time.perf_counter()
        response = await http.post(
            "/v1/support/tickets",
            json={"subject": f"bench {index}", "priority": "normal"},
            headers=headers,
        )
        round_trips.append((time.perf_counter() - sent) * 1000)
        arrived = await arrivals.wait(response.json()["ticket_id"])
        assigned.append((arrived - sent) * 1000)


async def measure_tickets(
    stack: Stack, kind: str, tickets: int, users: int, rate: float
) -> TicketFigures:
    run = secrets.token_hex(3)
    assigned: list[float] = []
    round_trips: list[float] = []
    async with (
        contextlib.AsyncExitStack() as exits,
        httpx.AsyncClient(base_url=stack.config.api_url, timeout=30) as http,
    ):
        await _operators(stack, exits, run)
        customers = []
        readers: list[asyncio.Task[None]] = []
        for index in range(users):
            user_id, token, mqtt = await register_with_device(http, f"customer_{run}_{index}")
            device = device_connection(mqtt)
            await exits.enter_async_context(device)
            await device.subscribe([(topics.user_support(user_id), 1)])
            arrivals = Arrivals(device)
            readers.append(asyncio.create_task(arrivals.read_forever()))
            customers.append((token, arrivals))
        interval = users / rate

        async def loops(count: int, out: list[float], trips: list[float]) -> None:
            await asyncio.gather(
                *(
                    _customer_loop(
                        http, token, device, count, interval, i * interval / users, out, trips
                    )
                    for i, (token, device) in enumerate(customers)
                )
            )

        await loops(3, [], [])  # warm-up
        per_user = max(1, tickets // users)
        await loops(per_user, assigned, round_trips)
        for reader in readers:
            reader.cancel()
    return TicketFigures(f"{kind}, {rate:.0f} tickets/s", assigned, round_trips, per_user * users)


def run_tickets(
    kinds: tuple[str, ...], tickets: int, rate: float = 20, users: int = 5
) -> list[TicketFigures]:
    print("== support: ticket opened -> assigned (operators online)", flush=True)
    figures = []
    for kind in kinds:
        with running_stack(kind, 1) as stack:
            figures.append(asyncio.run(measure_tickets(stack, kind, tickets, users, rate)))
            print("  " + figures[-1].lines()[0], flush=True)
    return figures


def print_tickets(figures: list[TicketFigures]) -> None:
    if not figures:
        return
    print()
    print("support routing (goal: p50 <= 5 ms)")
    for figure in figures:
        for line in figure.lines():
            print("  " + line)
