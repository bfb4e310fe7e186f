"""Steady chat traffic between the talkers, at a fixed total rate, with every
send and arrival written to the ledger.

Clients are the project's own (chatclient): an MQTT send goes through the
outbox, which re-sends with the same `client_msg_id` after a reconnect or a
missing ack; an HTTP send is retried by the sender until the API answers,
with the same `client_msg_id` (the server de-duplicates). The schedule is open
loop: sends follow the clock and never wait for earlier ones, so a stalled
system meets the traffic it would meet in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine, Iterator
from typing import Any

import httpx

from chatclient import (
    Ack,
    ApiError,
    ChatClient,
    ChatHttp,
    ConnectFailed,
    MessageEvent,
    SendMessage,
)
from tools.loadtest.api import ApiClients
from tools.loadtest.ledger import Ledger, Phase, Sent
from tools.loadtest.provision import Lane, Talker

TEXT = "x" * 150  # the bench's 150-byte body
CONNECT_CONCURRENCY = 16
CONNECT_ATTEMPTS = 3  # a busy broker may miss a connect's deadline; an app tries again
HTTP_RETRY_SECONDS = 0.25
SEND_TIMEOUT_SECONDS = 10.0  # an HTTP send; retried after a timeout


def _interleave(mqtt: int, http: int, http_share: float) -> Iterator[bool]:
    """For each send, whether it goes over HTTP: `http_share` of them, spread evenly."""
    share = http_share if mqtt and http else (1.0 if http else 0.0)
    index = 0
    while True:
        yield int((index + 1) * share) > int(index * share)
        index += 1


class Traffic:
    """`async with Traffic(lanes, api, ledger, rate, http_share) as traffic:`
    connects every talker's device; `await traffic.run(phase, stop)` sends until
    `stop` is set."""

    def __init__(
        self, lanes: list[Lane], api: ApiClients, ledger: Ledger, rate: float, http_share: float
    ) -> None:
        self.mqtt_lanes = [lane for lane in lanes if not lane.over_http]
        self.http_lanes = [lane for lane in lanes if lane.over_http]
        self.api = api
        self.ledger = ledger
        self.rate = rate
        self._over_http = _interleave(len(self.mqtt_lanes), len(self.http_lanes), http_share)
        self._mqtt_turn = 0
        self._http_turn = 0
        self.clients: dict[str, ChatClient] = {}
        self._https: dict[str, ChatHttp] = {}
        # An HTTP lane's sender posts one message at a time, in order, as an
        # app's outbox would: a down API meets one request per lane, not a pile.
        self._http_queues: dict[str, asyncio.Queue[str]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # --- lifecycle --------------------------------------------------------------------

    async def __aenter__(self) -> Traffic:
        try:
            await self._connect_all()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    def _http(self, talker: Talker) -> ChatHttp:
        http = self._https.get(talker.user_id)
        if http is None:
            http = self.api.client(talker.token)
            self._https[talker.user_id] = http
        return http

    async def _connect_all(self) -> None:
        talkers = [t for lane in self.mqtt_lanes + self.http_lanes for t in (lane.a, lane.b)]
        devices = [t for t in talkers if t.device is not None]
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def connect(talker: Talker) -> None:
            assert talker.device is not None
            async with gate:
                for attempt in range(1, CONNECT_ATTEMPTS + 1):
                    client = ChatClient(talker.device, talker.user_id, http=self._http(talker))
                    try:
                        await client.connect()
                        break
                    except ConnectFailed:
                        if attempt == CONNECT_ATTEMPTS:
                            raise
                        await asyncio.sleep(attempt)
            self.clients[talker.user_id] = client
            self._spawn(self._receive_forever(client), f"receive-{talker.user_id}")

        await asyncio.gather(*(connect(t) for t in devices))
        for lane in self.http_lanes:
            queue: asyncio.Queue[str] = asyncio.Queue()
            self._http_queues[lane.conv_id] = queue
            self._spawn(self._post_in_order(lane, queue), f"http-sender-{lane.conv_id}")

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(c.close() for c in self.clients.values()), return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- receiving --------------------------------------------------------------------

    async def _receive_forever(self, client: ChatClient) -> None:
        while True:
            event = await client.next_event()
            if isinstance(event, MessageEvent) and event.message.sender_id != client.user_id:
                message = event.message
                self.ledger.delivered(
                    message.client_msg_id, message.id, message.sender_id, time.perf_counter()
                )

    # --- sending ----------------------------------------------------------------------

    async def run(self, phase: Phase, stop: asyncio.Event) -> None:
        """Send at `rate` msg/s, tagged with `phase`, until `stop` is set."""
        started = time.perf_counter()
        sent = 0
        while not stop.is_set():
            due = int((time.perf_counter() - started) * self.rate) + 1
            while sent < due:
                self._send_one(phase)
                sent += 1
            pause = started + sent / self.rate - time.perf_counter()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, pause))

    def _send_one(self, phase: Phase) -> None:
        if next(self._over_http):
            lane = self.http_lanes[self._http_turn % len(self.http_lanes)]
            self._http_turn += 1
            self._send_http(phase, lane)
            return
        lane = self.mqtt_lanes[self._mqtt_turn % len(self.mqtt_lanes)]
        # Each conversation's members take turns.
        sender = lane.a if (self._mqtt_turn // len(self.mqtt_lanes)) % 2 == 0 else lane.b
        self._mqtt_turn += 1
        self._send_mqtt(phase, lane, sender)

    def _send_mqtt(self, phase: Phase, lane: Lane, sender: Talker) -> None:
        client_msg_id = phase.next_client_msg_id()
        self.ledger.sent(
            phase, Sent(client_msg_id, lane.conv_id, sender.user_id, "mqtt", time.perf_counter())
        )
        body = SendMessage(client_msg_id=client_msg_id, kind="text", text=TEXT)
        future = self.clients[sender.user_id].send(lane.conv_id, body)
        future.add_done_callback(lambda done: self._on_ack(client_msg_id, done))

    def _on_ack(self, client_msg_id: str, done: asyncio.Future[Ack]) -> None:
        if done.cancelled():
            self.ledger.acked(client_msg_id, "failed:cancelled")
            return
        error = done.exception()
        if error is not None:
            self.ledger.acked(client_msg_id, f"failed:{type(error).__name__}")
            return
        ack = done.result()
        if ack.status == "rejected":
            code = ack.error.code if ack.error else "?"
            self.ledger.acked(client_msg_id, f"rejected:{code}")
        else:
            self.ledger.acked(client_msg_id, ack.status)

    def _send_http(self, phase: Phase, lane: Lane) -> None:
        client_msg_id = phase.next_client_msg_id()
        self.ledger.sent(
            phase, Sent(client_msg_id, lane.conv_id, lane.a.user_id, "http", time.perf_counter())
        )
        self._http_queues[lane.conv_id].put_nowait(client_msg_id)

    async def _post_in_order(self, lane: Lane, queue: asyncio.Queue[str]) -> None:
        while True:
            await self._post_until_answered(lane, await queue.get())

    async def _post_until_answered(self, lane: Lane, client_msg_id: str) -> None:
        """POST until the API answers; a 5xx or no answer at all is tried again."""
        body = SendMessage(client_msg_id=client_msg_id, kind="text", text=TEXT)
        http = self._http(lane.a)
        while True:
            try:
                status, _stored = await http.send(lane.conv_id, body)
            except ApiError as error:
                if error.status < 500:
                    self.ledger.acked(client_msg_id, f"rejected:{error.code}")
                    return
            except httpx.HTTPError:
                pass
            else:
                self.ledger.acked(client_msg_id, "stored" if status == 201 else "duplicate")
                return
            await asyncio.sleep(HTTP_RETRY_SECONDS)
