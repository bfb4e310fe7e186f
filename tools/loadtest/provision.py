"""Users, devices and conversations, made through the HTTP API as an app makes them.

Two populations:
- holders: users with `devices_per_user` devices each, whose connections are
  held open (tools/loadtest/holders.py); they make up most connections;
- talkers: the members of the conversations that carry the traffic, one device
  each (an MQTT pair: both members send; an HTTP lane: one member sends over
  HTTP, which has no device, the other receives).

Costs measured on a 2-core machine (docs/load.md): registering a user hashes
its password with argon2 (0.2-0.3 s of CPU), and every device created makes
the broker rewrite its whole dynamic-security file, which grows with every
device (about 300 bytes each), so devices get slower as they accumulate.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import httpx

from chatclient import ApiError, DeviceCredentials, Session
from tools.loadtest.api import ApiClients

PASSWORD = "load-test-password"  # the API's minimum length is met; nothing else uses it
# A registration may queue behind others' argon2 hashing.
PROVISIONING_TIMEOUT_SECONDS = 120.0
REGISTER_CONCURRENCY = 4  # argon2 already uses the cores; more only queues in the API
DEVICE_CONCURRENCY = 8  # the broker handles dynamic-security commands one at a time
RETRY_ATTEMPTS = 5
RETRY_FIRST_DELAY_SECONDS = 1.0
T = TypeVar("T")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Talker:
    user_id: str
    token: str
    device: DeviceCredentials | None  # None: sends over HTTP only


@dataclass(frozen=True)
class Lane:
    """A conversation carrying traffic. MQTT pairs send both ways; an HTTP lane
    sends from `a` (over HTTP) to `b`."""

    conv_id: str
    a: Talker
    b: Talker
    over_http: bool


@dataclass(frozen=True)
class HeldDevice:
    user_id: str
    device: DeviceCredentials


@dataclass
class Population:
    lanes: list[Lane]
    held: list[HeldDevice]
    users: int
    register_seconds: float
    devices_seconds: float

    @property
    def connections(self) -> int:
        talking = sum(1 for lane in self.lanes for t in (lane.a, lane.b) if t.device is not None)
        return talking + len(self.held)


async def _bounded(limit: int, jobs: Sequence[Callable[[], Awaitable[T]]]) -> list[T]:
    gate = asyncio.Semaphore(limit)

    async def run(job: Callable[[], Awaitable[T]]) -> T:
        async with gate:
            return await job()

    return list(await asyncio.gather(*(run(job) for job in jobs)))


async def _retrying(call: Callable[[], Awaitable[T]]) -> T:
    """What an app does when the server is busy: try again, a few times, later.
    A 4xx is an answer, not a hiccup, and is raised at once."""
    delay = RETRY_FIRST_DELAY_SECONDS
    for _attempt in range(RETRY_ATTEMPTS - 1):
        try:
            return await call()
        except ApiError as error:
            if error.status < 500:
                raise
            log.warning("provisioning: %s; trying again in %.1f s", error, delay)
        except httpx.HTTPError as error:
            log.warning("provisioning: %r; trying again in %.1f s", error, delay)
        await asyncio.sleep(delay)
        delay *= 2
    return await call()


class Provisioner:
    def __init__(self, api: ApiClients) -> None:
        self.api = api
        self.run = secrets.token_hex(3)

    async def register(self, name: str) -> tuple[str, str]:
        """(user id, access token) of a new user. A registration whose answer was
        lost may have happened: then the name is taken, and logging in finds it."""
        username = f"lt{self.run}_{name}"
        async with self.api.one_off() as http:

            async def register_or_log_in() -> Session:
                try:
                    return await http.register(username, PASSWORD, name)
                except ApiError as error:
                    if error.code != "username_taken":
                        raise
                    return await http.login(username, PASSWORD)

            session = await _retrying(register_or_log_in)
        return session.user_id, session.access_token

    async def devices(self, token: str, count: int) -> list[DeviceCredentials]:
        async with self.api.one_off(token) as http:
            return [await _retrying(partial(http.create_device, "ios")) for _ in range(count)]

    async def conversation(self, a: Talker, b: Talker) -> str:
        async with self.api.one_off(a.token) as http:
            return str((await http.create_conversation([b.user_id]))["conv_id"])

    async def populate(
        self,
        connections: int,
        pairs: int,
        http_lanes: int,
        devices_per_user: int,
        progress: Callable[[str], None],
    ) -> Population:
        """Register everyone first, then create the devices, then the
        conversations: each stage is timed on its own (their costs differ)."""
        talking = 2 * pairs + http_lanes
        if connections < talking:
            raise ValueError(
                f"--connections {connections} is fewer than the {talking} "
                "the traffic needs (2 per pair + 1 per HTTP lane)"
            )
        # (name, devices): pair members, then HTTP senders and receivers, then holders.
        plan = [(f"p{i}", 1) for i in range(2 * pairs)]
        plan += [(f"s{i}", 0) for i in range(http_lanes)]
        plan += [(f"r{i}", 1) for i in range(http_lanes)]
        held = connections - talking
        plan += [
            (f"h{i}", min(devices_per_user, held - start))
            for i, start in enumerate(range(0, held, devices_per_user))
        ]

        started = time.perf_counter()
        progress(f"registering {len(plan)} users")
        jobs = [partial(self.register, name) for name, _count in plan]
        accounts = await _bounded(REGISTER_CONCURRENCY, jobs)
        register_seconds = time.perf_counter() - started

        started = time.perf_counter()
        progress(f"creating {sum(count for _name, count in plan)} devices")
        device_jobs = [
            partial(self.devices, token, count)
            for (_user, token), (_name, count) in zip(accounts, plan, strict=True)
        ]
        devices = await _bounded(DEVICE_CONCURRENCY, device_jobs)
        devices_seconds = time.perf_counter() - started

        talkers = [
            Talker(user_id, token, own[0] if own else None)
            for (user_id, token), own in zip(
                accounts[: talking + http_lanes], devices, strict=False
            )
        ]
        members = [(talkers[2 * i], talkers[2 * i + 1], False) for i in range(pairs)]
        senders = talkers[2 * pairs : 2 * pairs + http_lanes]
        receivers = talkers[2 * pairs + http_lanes :]
        members += [(s, r, True) for s, r in zip(senders, receivers, strict=True)]
        conv_ids = await _bounded(
            DEVICE_CONCURRENCY, [partial(self.conversation, a, b) for a, b, _h in members]
        )
        lanes = [
            Lane(conv_id, a, b, over_http)
            for conv_id, (a, b, over_http) in zip(conv_ids, members, strict=True)
        ]
        held_devices = [
            HeldDevice(user_id, device)
            for (user_id, _token), own in zip(
                accounts[len(talkers) :], devices[len(talkers) :], strict=True
            )
            for device in own
        ]
        return Population(lanes, held_devices, len(plan), register_seconds, devices_seconds)
