"""A worker process that holds device connections open: `python -m tools.loadtest.holders`.

Each connection is what an idle app keeps: MQTT over WebSocket with its own
device credentials, a persistent session, its `user/<id>/#` subscription,
presence online (retained) with a Last Will saying offline, keepalive pings;
after a lost connection it reconnects (bridge.mqtt does, with backoff), is
subscribed again and says online again.

Protocol with the parent (tools/loadtest/pool.py), JSON lines:
- stdin, first line: {"devices": [DeviceCredentials fields + "user_id"], "concurrency": n};
- stdout, about once a second: {"connected", "total", "failed", "reconnects",
  "received", "ready"}; `ready` once every connection was attempted;
- stdin closed (the parent is done, or died): close every connection and exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import resource
import sys
import time
from dataclasses import dataclass
from typing import Any

from bridge import topics
from bridge.mqtt import AsyncMqtt, MqttError, Will
from chatclient import DeviceCredentials, endpoint_for
from chatclient.client import OFFLINE, ONLINE

CONNECT_TIMEOUT_SECONDS = 30.0
CONNECT_ATTEMPTS = 5
STATUS_SECONDS = 1.0
CLOSE_TIMEOUT_SECONDS = 30.0

log = logging.getLogger("tools.loadtest.holders")


def raise_open_file_limit(wanted: int = 0) -> int:
    """One descriptor per connection: lift the soft limit to the hard one, and
    the hard one to `wanted` where this process may (root may). Returns the
    limit now in force."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if wanted > hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


@dataclass
class Held:
    user_id: str
    creds: DeviceCredentials
    mqtt: AsyncMqtt | None = None
    announced: int = 0  # connect_count when presence last said online
    failed: bool = False

    def _client(self) -> AsyncMqtt:
        presence = topics.presence(self.user_id, self.creds.device_id)
        return AsyncMqtt(
            endpoint_for(self.creds, "websockets"),
            client_id=self.creds.client_id,
            username=self.creds.username,
            password=self.creds.password,
            clean_start=False,
            will=Will(presence, OFFLINE, qos=1, retain=True),
        )

    async def open(self) -> None:
        delay = 0.5
        for attempt in range(CONNECT_ATTEMPTS):
            mqtt = self._client()
            try:
                await mqtt.connect(CONNECT_TIMEOUT_SECONDS)
            except MqttError as error:
                log.warning("%s: connect attempt %d: %s", self.creds.device_id, attempt + 1, error)
                await asyncio.sleep(delay)
                delay *= 2
                continue
            self.mqtt = mqtt
            await mqtt.subscribe([(topics.user_root(self.user_id), 1)])
            self._announce(mqtt)
            return
        self.failed = True

    def _announce(self, mqtt: AsyncMqtt) -> None:
        presence = topics.presence(self.user_id, self.creds.device_id)
        mqtt.publish(presence, ONLINE, qos=1, retain=True).add_done_callback(_retrieve)
        self.announced = mqtt.connect_count

    def tick(self) -> int:
        """Say online again after a reconnect; take what arrived. Returns how many."""
        mqtt = self.mqtt
        if mqtt is None:
            return 0
        if mqtt.connected.is_set() and mqtt.connect_count > self.announced:
            self._announce(mqtt)
        received = 0
        while mqtt.get_message_nowait() is not None:
            received += 1
        return received


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


class Holder:
    def __init__(self, held: list[Held], concurrency: int) -> None:
        self.held = held
        self.concurrency = concurrency
        self.received = 0
        self.ready = False

    def status(self) -> dict[str, Any]:
        clients = [h.mqtt for h in self.held if h.mqtt is not None]
        return {
            "connected": sum(1 for m in clients if m.connected.is_set()),
            "total": len(self.held),
            "failed": sum(1 for h in self.held if h.failed),
            "reconnects": sum(max(0, m.connect_count - 1) for m in clients),
            "received": self.received,
            "ready": self.ready,
        }

    async def connect_all(self) -> None:
        gate = asyncio.Semaphore(self.concurrency)

        async def one(held: Held) -> None:
            async with gate:
                await held.open()

        await asyncio.gather(*(one(h) for h in self.held))
        self.ready = True

    async def report_forever(self) -> None:
        while True:
            for held in self.held:
                self.received += held.tick()
            print(json.dumps(self.status()), flush=True)
            await asyncio.sleep(STATUS_SECONDS)

    async def close_all(self) -> None:
        clients = [h.mqtt for h in self.held if h.mqtt is not None]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(m.disconnect() for m in clients), return_exceptions=True),
                CLOSE_TIMEOUT_SECONDS,
            )


async def stdin_closed() -> None:
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.readline():
        pass


def parse_devices(config: dict[str, Any]) -> list[Held]:
    held = []
    for item in config["devices"]:
        fields = dict(item)
        user_id = str(fields.pop("user_id"))
        held.append(Held(user_id, DeviceCredentials(**fields)))
    return held


async def main_async(config: dict[str, Any]) -> None:
    holder = Holder(parse_devices(config), int(config["concurrency"]))
    started = time.perf_counter()
    async with asyncio.TaskGroup() as tasks:
        reporter = tasks.create_task(holder.report_forever(), name="report")
        connecting = tasks.create_task(holder.connect_all(), name="connect")
        await stdin_closed()
        log.info("stdin closed after %.0f s: closing", time.perf_counter() - started)
        connecting.cancel()
        await holder.close_all()
        reporter.cancel()


def main() -> None:
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    raise_open_file_limit()
    config = json.loads(sys.stdin.readline())
    asyncio.run(main_async(config))


if __name__ == "__main__":
    main()
