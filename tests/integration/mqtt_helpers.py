"""Raw MQTT connections for tests that must act outside the client library
(forged publishes, wildcard subscriptions, stolen client ids)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlparse

from bridge import topics
from bridge.mqtt import AsyncMqtt, Endpoint, Inbound
from tests.factories import ApiUser


def endpoint(device: dict[str, Any], transport: str = "websockets") -> Endpoint:
    mqtt = device["mqtt"]
    if transport == "websockets":
        url = urlparse(mqtt["ws_url"])
        return Endpoint(
            url.hostname or "127.0.0.1", url.port or 80, "websockets", url.path or "/mqtt"
        )
    return Endpoint(mqtt["tcp_host"], mqtt["tcp_port"], "tcp")


def device_connection(
    device: dict[str, Any],
    *,
    transport: str = "websockets",
    client_id: str | None = None,
    password: str | None = None,
    username: str | None = None,
) -> AsyncMqtt:
    mqtt = device["mqtt"]
    return AsyncMqtt(
        endpoint(device, transport),
        client_id=client_id or mqtt["client_id"],
        username=username or mqtt["username"],
        password=password or mqtt["password"],
        clean_start=True,
        reconnect=False,
    )


@contextlib.asynccontextmanager
async def inbox(user: ApiUser, transport: str = "websockets") -> AsyncIterator[AsyncMqtt]:
    """A new device of `user`, connected and subscribed to the user's own topics."""
    async with device_connection(user.device(), transport=transport) as conn:
        assert await conn.subscribe([(topics.user_root(user.user_id), 1)]) == [1]
        yield conn


async def drain(conn: AsyncMqtt, quiet: float = 0.3) -> list[Inbound]:
    """Everything that arrives until `quiet` seconds pass with nothing new."""
    received = []
    while True:
        try:
            received.append(await conn.next_message(quiet))
        except TimeoutError:
            return received


async def wait_for(
    conn: AsyncMqtt, topic_suffix: str, timeout: float = 5.0, **fields: Any
) -> dict[str, Any]:
    """The next message whose topic ends with `topic_suffix` and whose JSON has `fields`."""
    async with asyncio.timeout(timeout):
        while True:
            message = await conn.next_message()
            if not message.topic.endswith(topic_suffix):
                continue
            body: dict[str, Any] = json.loads(message.payload)
            if all(body.get(k) == v for k, v in fields.items()):
                return body


def text_send(cmid: str, text: str = "hi") -> bytes:
    return json.dumps({"client_msg_id": cmid, "kind": "text", "text": text}).encode()
