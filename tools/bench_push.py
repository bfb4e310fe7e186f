"""Push figures, against the Expo double (Expo cannot be reached from here):

1. stored message -> push request for an offline recipient: a device sends over
   MQTT (paced), the double stamps each push's arrival (same process, same
   clock). The collapse window is set to 0 here, so the figure is the pipeline;
   in production the window (1 s by default) comes on top, by design.
2. a burst to 10,000 offline recipients: one message to a group whose members
   (seeded straight into the database) all have a push token and no device
   online; how many requests reach Expo and how long until the last push.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass

import httpx
from sqlalchemy import insert

from bridge import topics
from bridge.mqtt import AsyncMqtt
from bridge.topics import UpKind
from core.db import make_engine
from core.ids import new_id
from core.models import Conversation, Device, Member, User
from core.timefmt import utcnow
from tools.bench_support import percentile, running_stack, ws_endpoint
from tools.expo_double import ExpoDouble
from tools.stack import Stack

PASSWORD = "bench-password-1"


@dataclass(frozen=True)
class PushFigures:
    kind: str
    latencies_ms: list[float]
    sent: int
    burst_recipients: int
    burst_pushes: int
    burst_requests: int
    burst_seconds: float

    def lines(self) -> list[str]:
        lat = self.latencies_ms
        return [
            f"stored -> push request, {self.kind} (window 0): p50 {percentile(lat, 50):.2f} ms, "
            f"p99 {percentile(lat, 99):.2f} ms, {len(lat)}/{self.sent} pushed",
            f"burst to {self.burst_recipients} offline recipients, {self.kind}: "
            f"{self.burst_pushes} pushes in {self.burst_requests} requests, last after "
            f"{self.burst_seconds:.2f} s",
        ]


async def _register(http: httpx.AsyncClient, name: str) -> tuple[str, str]:
    body = {"username": name, "password": PASSWORD, "display_name": name}
    session = (await http.post("/v1/auth/register", json=body)).json()
    return session["user_id"], session["access_token"]


async def measure_latency(stack: Stack, expo: ExpoDouble, count: int) -> tuple[list[float], int]:
    run = secrets.token_hex(3)
    async with httpx.AsyncClient(base_url=stack.config.api_url, timeout=30) as http:
        sender, token = await _register(http, f"pushbench_{run}_s")
        receiver, receiver_token = await _register(http, f"pushbench_{run}_r")
        auth = {"Authorization": f"Bearer {token}"}
        push_token = f"ExponentPushToken[bench{run}]"
        await http.post(
            "/v1/devices",
            json={"platform": "ios", "push_token": push_token},
            headers={"Authorization": f"Bearer {receiver_token}"},
        )
        conv = await http.post("/v1/conversations", json={"member_ids": [receiver]}, headers=auth)
        conv_id = conv.json()["conv_id"]
        device = (await http.post("/v1/devices", json={"platform": "web"}, headers=auth)).json()
    creds = device["mqtt"]
    sent_at: dict[int, float] = {}
    async with AsyncMqtt(
        ws_endpoint(creds["ws_url"]),
        client_id=creds["client_id"],
        username=creds["username"],
        password=creds["password"],
        clean_start=True,
        session_expiry=0,
    ) as mqtt:
        topic = topics.conv_up(conv_id, UpKind.MSG, sender)
        for seq in range(1, count + 1):
            body = f'{{"client_msg_id": "b{seq}", "kind": "text", "text": "offer {seq}"}}'
            sent_at[seq] = time.perf_counter()
            mqtt.publish(topic, body.encode())
            await asyncio.sleep(0.05)  # 20 messages a second
        await asyncio.to_thread(_wait_for, expo, push_token, count, 20.0)
    latencies = [
        (arrived - sent_at[message["data"]["seq"]]) * 1000
        for arrived, message in expo.arrivals
        if message["to"] == push_token
    ]
    return latencies, count


def _wait_for(expo: ExpoDouble, token: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(expo.messages_to(token)) < count and time.monotonic() < deadline:
        time.sleep(0.05)


def seed_group(stack: Stack, sender: str, members: int) -> str:
    """A group of `members` users who each have a device with a push token and
    none online, written straight to the database (the API would take minutes)."""
    run = secrets.token_hex(3)
    now = utcnow()
    users = [new_id("u_") for _ in range(members)]
    conv_id = new_id("c_")
    engine = make_engine(stack.config.database_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(User.__table__),  # type: ignore[attr-defined]
                [
                    {
                        "id": u,
                        "username": f"g{run}{i}",
                        "password_hash": "-",
                        "display_name": f"Buyer {i}",
                        "role": "user",
                        "created_at": now,
                    }
                    for i, u in enumerate(users)
                ],
            )
            conn.execute(
                insert(Device.__table__),  # type: ignore[attr-defined]
                [
                    {
                        "id": new_id("d_"),
                        "user_id": u,
                        "platform": "android",
                        "push_token": f"ExponentPushToken[{run}{i}]",
                        "created_at": now,
                        "online": False,
                    }
                    for i, u in enumerate(users)
                ],
            )
            conn.execute(
                insert(Conversation.__table__),  # type: ignore[attr-defined]
                {"id": conv_id, "kind": "group", "title": "Flash sale", "created_at": now},
            )
            conn.execute(
                insert(Member.__table__),  # type: ignore[attr-defined]
                [{"conv_id": conv_id, "user_id": u, "joined_at": now} for u in [sender, *users]],
            )
    finally:
        engine.dispose()
    return conv_id


async def measure_burst(stack: Stack, expo: ExpoDouble, recipients: int) -> tuple[int, int, float]:
    async with httpx.AsyncClient(base_url=stack.config.api_url, timeout=120) as http:
        sender, token = await _register(http, f"pushbench_{secrets.token_hex(3)}_seller")
        conv_id = await asyncio.to_thread(seed_group, stack, sender, recipients)
        before_pushes, before_requests = len(expo.messages), expo.requests
        started = time.perf_counter()
        response = await http.post(
            f"/v1/conversations/{conv_id}/messages",
            json={"client_msg_id": "flash", "kind": "text", "text": "everything half price"},
            headers={"Authorization": f"Bearer {token}"},
        )
        response.raise_for_status()
    target = before_pushes + recipients
    last = await asyncio.to_thread(_wait_for_total, expo, target, 120.0)
    return len(expo.messages) - before_pushes, expo.requests - before_requests, last - started


def _wait_for_total(expo: ExpoDouble, total: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        arrivals = expo.arrivals
        if len(arrivals) >= total:
            return arrivals[total - 1][0]
        time.sleep(0.1)
    arrivals = expo.arrivals
    return arrivals[-1][0] if arrivals else time.perf_counter()


def run_push(kinds: tuple[str, ...], count: int, recipients: int = 10_000) -> list[PushFigures]:
    print("== push: stored message -> Expo request; a burst to offline recipients", flush=True)
    figures = []
    for kind in kinds:
        with ExpoDouble() as expo:
            env = {
                "EXPO_API_URL": expo.url,
                "PUSH_MESSAGE_WINDOW_SECONDS": "0",
                "PUSH_USER_PER_MINUTE": "100000",
            }
            with running_stack(kind, 1, extra_env=env) as stack:
                latencies, sent = asyncio.run(measure_latency(stack, expo, count))
                pushes, requests, seconds = asyncio.run(measure_burst(stack, expo, recipients))
        figure = PushFigures(kind, latencies, sent, recipients, pushes, requests, seconds)
        for line in figure.lines():
            print("  " + line, flush=True)
        figures.append(figure)
    return figures


def print_push(figures: list[PushFigures]) -> None:
    if figures:
        print()
        for figure in figures:
            for line in figure.lines():
                print(line)
