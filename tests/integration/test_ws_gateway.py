"""The devices' WebSocket gateway (ws_gateway/): devices are sent to it, it
passes MQTT through to the broker unchanged (so every other test's device
traffic crosses it, with the broker's logins and ACLs), it keeps to its path and
its connection cap, and devices come back by themselves after it is killed."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from bridge import topics
from bridge.mqtt import AsyncMqtt, Endpoint, MqttError
from bridge.wire.messaging import SendMessage
from chatclient import ChatClient, DeviceCredentials
from chatclient.client import OFFLINE
from chatclient.outbox import new_client_msg_id
from tests.integration.call_helpers import phone, service_watcher
from tools.broker import free_port
from tools.stack import GATEWAY, Stack
from tools.ws_gateway import gateway_settings, start_gateway

pytestmark = pytest.mark.anyio

TEXT = "sent while the gateway was down"


def through(port: int, creds: DeviceCredentials, path: str = "/mqtt") -> AsyncMqtt:
    return AsyncMqtt(
        Endpoint("127.0.0.1", port, "websockets", path),
        client_id=creds.client_id,
        username=creds.username,
        password=creds.password,
        clean_start=True,
        reconnect=False,
    )


async def connections(port: int) -> int:
    async with httpx.AsyncClient(timeout=5) as client:
        health = (await client.get(f"http://127.0.0.1:{port}/healthz")).json()
    assert health["status"] == "ok"
    return int(health["connections"])


async def test_devices_are_sent_to_the_gateway_and_talk_through_it(stack: Stack) -> None:
    port = stack.config.gateway_port
    assert port is not None
    api = stack.config.api_url
    async with phone(api, "alice") as alice, phone(api, "bob") as bob:
        creds = await bob.http.create_device("android")
        assert urlsplit(creds.ws_url).port == port
        before = await connections(port)
        async with ChatClient(creds, bob.user_id, http=bob.http) as bobs_phone:
            assert await connections(port) >= before + 1
            conv = await alice.converse_with(bob)
            ack = await alice.device.send_text(conv, "through the gateway")
            assert ack.status == "stored"
            got = await bobs_phone.wait_for_message(lambda m: m.conv_id == conv)
            assert got.text == "through the gateway"


async def test_only_the_mqtt_path_is_served(stack: Stack) -> None:
    port = stack.config.gateway_port
    assert port is not None
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(f"http://127.0.0.1:{port}/elsewhere")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    async with phone(stack.config.api_url, "carol", devices=0) as carol:
        creds = await carol.http.create_device("web")
        with pytest.raises(MqttError):
            await through(port, creds, path="/elsewhere").connect(timeout=5)


@pytest.fixture
def capped_gateway(stack: Stack) -> Iterator[int]:
    """A second gateway in front of the same broker, for one connection only."""
    port = free_port()
    settings = gateway_settings(port, stack.config.tcp_port, max_connections=1)
    process = start_gateway(settings, stack.log_dir / f"ws_gateway-capped-{port}.log")
    yield port
    process.kill()
    process.wait()


async def test_past_its_cap_a_connection_is_refused_until_one_leaves(
    stack: Stack, capped_gateway: int
) -> None:
    async with phone(stack.config.api_url, "dave", devices=0) as dave:
        first, second = [await dave.http.create_device("web") for _ in range(2)]
        async with through(capped_gateway, first):
            with pytest.raises(MqttError):
                await through(capped_gateway, second).connect(timeout=5)
        for _ in range(50):
            if await connections(capped_gateway) == 0:
                break
            await asyncio.sleep(0.1)
        async with through(capped_gateway, second) as later:
            assert later.connected.is_set()


async def test_a_killed_gateway_loses_nothing_and_devices_come_back(stack: Stack) -> None:
    """kill -9: each device's connection to the broker ends without DISCONNECT,
    so the broker publishes its Last Will; started again, the devices reconnect
    by themselves and what was sent meanwhile over HTTP arrives."""
    api = stack.config.api_url
    async with (
        phone(api, "erin") as erin,
        phone(api, "frank") as frank,
        service_watcher(stack, f"gateway-watch-{secrets.token_hex(3)}") as watcher,
    ):
        conv = await erin.converse_with(frank)
        await watcher.subscribe([(topics.presence(frank.user_id, frank.device.device_id), 1)])
        stack.kill(GATEWAY)
        while (await watcher.next_message(10)).payload != OFFLINE:
            pass
        body = SendMessage(client_msg_id=new_client_msg_id(), kind="text", text=TEXT)
        status, _ = await erin.http.send(conv, body)
        assert status == 201
        stack.start_gateway()
        # Reconnected (with backoff), caught up: the message arrives.
        got = await frank.device.wait_for_message(lambda m: m.conv_id == conv, timeout=45)
        assert got.text == TEXT
