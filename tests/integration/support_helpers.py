"""Operators and customers for the live-support tests, on a stack of their own
(the queue is global: tests sharing one would take each other's tickets)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from api.operators import create_operator
from bridge.wire.support import DeskEvent, QueueSnapshot, SupportEvent
from chatclient import ChatClient, ChatHttp
from chatclient.events import DeskEventReceived, Event, QueueChanged, SupportEventReceived
from core.db import make_engine
from tests.conftest import start_stack
from tools.stack import Stack

# Short timers, so grace, SLA and aging can be watched within a test.
FAST_SUPPORT = {
    "SUPPORT_OPERATOR_GRACE_SECONDS": "1.5",
    "SUPPORT_SWEEP_SECONDS": "0.5",
    "SUPPORT_SLA_URGENT_SECONDS": "60",
    "SUPPORT_SLA_HIGH_SECONDS": "60",
    "SUPPORT_SLA_NORMAL_SECONDS": "60",
    "SUPPORT_SLA_LOW_SECONDS": "60",
    "PRESENCE_OFFLINE_DEBOUNCE_SECONDS": "1",
}


def support_stack(database_url: str, data_dir: Path, **settings: str) -> Stack:
    """Two router instances (claims race for real), one of everything else."""
    return start_stack(
        database_url,
        data_dir,
        instances=1,
        callsig_instances=1,
        router_instances=2,
        **{**FAST_SUPPORT, **settings},
    )


@dataclass
class Person:
    user_id: str
    name: str
    http: ChatHttp
    client: ChatClient


@contextlib.asynccontextmanager
async def customer(stack: Stack, name: str = "customer") -> AsyncIterator[Person]:
    display = f"{name.title()} {secrets.token_hex(2)}"
    async with ChatHttp(stack.config.api_url) as http:
        session = await http.register(f"{name}_{secrets.token_hex(4)}", "correct horse", display)
        creds = await http.create_device("ios")
        async with ChatClient(creds, session.user_id, http=http) as client:
            yield Person(session.user_id, display, http, client)


@contextlib.asynccontextmanager
async def operator(
    stack: Stack,
    name: str = "agent",
    *,
    capacity: int = 2,
    status: str = "online",
    supervisor: bool = False,
    connect: bool = True,
) -> AsyncIterator[Person]:
    """An operator created with the admin function, logged in, with a device
    connected (its presence is what makes them connected) and `status` set."""
    username = f"{name}_{secrets.token_hex(4)}"
    display = f"{name.title()} {secrets.token_hex(2)}"
    engine = make_engine(stack.config.database_url)
    try:
        create_operator(
            engine,
            username=username,
            password="correct horse",
            display_name=display,
            capacity=capacity,
            supervisor=supervisor,
        )
    finally:
        engine.dispose()
    async with ChatHttp(stack.config.api_url) as http:
        session = await http.login(username, "correct horse")
        creds = await http.create_device("web")
        client = ChatClient(creds, session.user_id, http=http)
        if connect:
            await client.connect()
            await _until_connected(http)
        try:
            if status != "offline":
                await http.set_operator_status(status)
            yield Person(session.user_id, display, http, client)
        finally:
            if client.connected:
                await client.close()


async def _until_connected(http: ChatHttp, timeout: float = 10.0) -> None:
    """The router learns of a connection from the device's presence, a moment
    after the connect: a test that transfers to this operator at once would race it."""
    step = 0.02
    for _ in range(int(timeout / step)):
        if (await http.operator_me())["connected"]:
            return
        await asyncio.sleep(step)
    raise AssertionError(f"the router did not see the operator connect within {timeout} s")


def desk(ticket_id: str, event: str) -> Callable[[Event], bool]:
    def matches(candidate: Event) -> bool:
        return (
            isinstance(candidate, DeskEventReceived)
            and candidate.event.ticket.ticket_id == ticket_id
            and candidate.event.event == event
        )

    return matches


async def desk_event(person: Person, ticket_id: str, event: str) -> DeskEvent:
    found = await person.client.wait_for_event(desk(ticket_id, event))
    assert isinstance(found, DeskEventReceived)
    return found.event


async def queue_where(person: Person, check: Callable[[QueueSnapshot], bool]) -> QueueSnapshot:
    def matches(candidate: Event) -> bool:
        return isinstance(candidate, QueueChanged) and check(candidate.snapshot)

    found = await person.client.wait_for_event(matches)
    assert isinstance(found, QueueChanged)
    return found.snapshot


async def support_event(
    person: Person,
    ticket_id: str,
    event: str,
    where: Callable[[SupportEvent], bool] = lambda _event: True,
) -> SupportEvent:
    """The first such event that also satisfies `where` (two router instances
    may both tell a user the same position)."""

    def matches(candidate: Event) -> bool:
        return (
            isinstance(candidate, SupportEventReceived)
            and candidate.event.ticket_id == ticket_id
            and candidate.event.event == event
            and where(candidate.event)
        )

    found = await person.client.wait_for_event(matches)
    assert isinstance(found, SupportEventReceived)
    return found.event
