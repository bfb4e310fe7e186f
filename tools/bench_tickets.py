"""Support routing latency, with operators online:

1. arrival: `POST /v1/support/tickets` sent -> the user's device receives
   `assigned` on `user/{uid}/support` (what the app sees), and, of that, the
   ticket's creation (its `created_at`, stamped in the API just before its
   transaction) -> `assigned` received, on the wall clock of this one machine;
2. the router's path: a ticket waits, an operator switches to online
   (`PUT .../operators/me/status` sent) -> the waiting user receives
   `assigned` (API commit, wake-up over the broker, the router's walk and
   claim, the event);
3. the floor: a paced `GET /healthz` round trip, the cost of any HTTP request
   here, so the figures above can be read against it.

Paced: several users each open one ticket at a time, together at `rate`
tickets a second, so the figure is the path's latency, not a queue building up.
The old app polled support every 2 s (1 s mean wait).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime

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
    rate: float
    arrival_ms: list[float]
    created_ms: list[float]
    router_ms: list[float]
    healthz_ms: list[float]
    expected: int

    def lines(self) -> list[str]:
        def figure(label: str, values: list[float], extra: str = "") -> str:
            p50 = percentile(values, 50)
            return (
                f"{label:<58}{p50:>8.2f}{percentile(values, 99):>9.2f}"
                f"{max(values, default=float('nan')):>9.2f}{len(values):>7}"
                f"{ANCHOR_POLL_MEAN_MS / p50 if p50 else float('nan'):>9.0f}{extra}"
            )

        return [
            figure(f"POST ticket -> assigned, {self.kind}, {self.rate:.0f}/s", self.arrival_ms),
            figure(f"  ticket created -> assigned, {self.kind}", self.created_ms),
            figure(f"operator online -> waiting ticket assigned, {self.kind}", self.router_ms),
            figure(f"  floor: paced GET /healthz round trip, {self.kind}", self.healthz_ms),
        ]


async def _operators(
    stack: Stack, exits: contextlib.AsyncExitStack, run: str, count: int = OPERATORS
) -> list[ChatHttp]:
    """Operators online and connected, with room for every ticket of the run."""
    engine = make_engine(stack.config.database_url)
    try:
        names = [f"agent_{run}_{index}" for index in range(count)]
        for name in names:
            create_operator(
                engine, username=name, password=BENCH_PASSWORD, display_name=name, capacity=100_000
            )
    finally:
        engine.dispose()
    sessions = []
    for name in names:
        http = await exits.enter_async_context(ChatHttp(stack.config.api_url))
        session = await http.login(name, BENCH_PASSWORD)
        creds = await http.create_device("web")
        await exits.enter_async_context(ChatClient(creds, session.user_id, http=http))
        await http.set_operator_status("online")
        sessions.append(http)
    return sessions


class Arrivals:
    """Stamps each `assigned` as it arrives: it may come before the HTTP answer
    that names the ticket, so it is looked up by ticket id afterwards."""

    def __init__(self, device: AsyncMqtt) -> None:
        self.device = device
        self.at: dict[str, tuple[float, float]] = {}  # (perf_counter, wall clock)
        self.changed = asyncio.Event()

    async def read_forever(self) -> None:
        async for message in self.device.messages():
            arrived = (time.perf_counter(), time.time())
            body = json.loads(message.payload)
            if body.get("event") == "assigned":
                self.at[body["ticket_id"]] = arrived
                self.changed.set()

    async def wait(self, ticket_id: str, timeout: float = 10.0) -> tuple[float, float]:
        async with asyncio.timeout(timeout):
            while ticket_id not in self.at:
                self.changed.clear()
                await self.changed.wait()
        return self.at.pop(ticket_id)


@dataclass
class Samples:
    arrival: list[float] = field(default_factory=list)
    created: list[float] = field(default_factory=list)


async def _customer_loop(
    http: httpx.AsyncClient,
    token: str,
    arrivals: Arrivals,
    count: int,
    interval: float,
    offset: float,
    out: Samples,
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
        ticket_id = response.json()["ticket_id"]
        arrived, arrived_wall = await arrivals.wait(ticket_id)
        out.arrival.append((arrived - sent) * 1000)
        view = (await http.get(f"/v1/support/tickets/{ticket_id}", headers=headers)).json()
        created = datetime.fromisoformat(view["created_at"]).timestamp()
        out.created.append((arrived_wall - created) * 1000)


async def _healthz(http: httpx.AsyncClient, count: int, interval: float) -> list[float]:
    samples = []
    for _ in range(count):
        await asyncio.sleep(interval)
        sent = time.perf_counter()
        await http.get("/healthz")
        samples.append((time.perf_counter() - sent) * 1000)
    return samples


async def _router_path(
    stack: Stack, exits: contextlib.AsyncExitStack, http: httpx.AsyncClient, count: int, run: str
) -> list[float]:
    """A ticket waits (its only operator is away); the operator comes online."""
    (agent,) = await _operators(stack, exits, f"{run}r", 1)
    await agent.set_operator_status("away")
    user_id, token, mqtt = await register_with_device(http, f"waiting_{run}")
    headers = {"Authorization": f"Bearer {token}"}
    device = device_connection(mqtt)
    await exits.enter_async_context(device)
    await device.subscribe([(topics.user_support(user_id), 1)])
    arrivals = Arrivals(device)
    reader = asyncio.create_task(arrivals.read_forever())
    samples = []
    try:
        for index in range(count):
            opened = await http.post(
                "/v1/support/tickets",
                json={"subject": f"waiting {index}", "priority": "normal"},
                headers=headers,
            )
            ticket_id = opened.json()["ticket_id"]
            await asyncio.sleep(0.05)
            sent = time.perf_counter()
            await agent.set_operator_status("online")
            arrived, _ = await arrivals.wait(ticket_id)
            samples.append((arrived - sent) * 1000)
            await agent.close_ticket(ticket_id)
            await agent.set_operator_status("away")
    finally:
        reader.cancel()
    return samples


async def measure_tickets(
    stack: Stack, kind: str, tickets: int, users: int, rate: float
) -> TicketFigures:
    run = secrets.token_hex(3)
    samples = Samples()
    async with (
        contextlib.AsyncExitStack() as exits,
        httpx.AsyncClient(base_url=stack.config.api_url, timeout=30) as http,
    ):
        agents = await _operators(stack, exits, run)
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

        async def loops(count: int, out: Samples) -> None:
            await asyncio.gather(
                *(
                    _customer_loop(
                        http, token, arrivals, count, interval, i * interval / users, out
                    )
                    for i, (token, arrivals) in enumerate(customers)
                )
            )

        await loops(3, Samples())  # warm-up
        per_user = max(1, tickets // users)
        await loops(per_user, samples)
        for reader in readers:
            reader.cancel()
        healthz = await _healthz(http, 200, 1 / rate)
        for agent in agents:  # from here only the router path's operator takes tickets
            await agent.set_operator_status("away")
        router = await _router_path(stack, exits, http, min(100, tickets), run)
    return TicketFigures(
        kind, rate, samples.arrival, samples.created, router, healthz, per_user * users
    )


def run_tickets(
    kinds: tuple[str, ...], tickets: int, rate: float = 20, users: int = 5
) -> list[TicketFigures]:
    print("== support: ticket opened -> assigned (operators online)", flush=True)
    figures = []
    for kind in kinds:
        with running_stack(kind, 1) as stack:
            figures.append(asyncio.run(measure_tickets(stack, kind, tickets, users, rate)))
            print("  " + figures[-1].lines()[0].strip(), flush=True)
    return figures


def print_tickets(figures: list[TicketFigures]) -> None:
    if not figures:
        return
    print()
    print(
        f"{'support routing (goal: p50 <= 5 ms)':<58}{'p50 ms':>8}{'p99 ms':>9}{'max ms':>9}"
        f"{'n':>7}{'x poll':>9}"
    )
    for figure in figures:
        for line in figure.lines():
            print(line)
    anchor = "anchor: the old app polled support every 2 s (mean wait)"
    print(f"{anchor:<58}{ANCHOR_POLL_MEAN_MS:>8.0f}")
