"""An asyncio face on paho-mqtt's own network thread.

Why not a plain aiomqtt loop: see docs/architecture.md ("Latency"). In short,
three things make a Python relay fast, and this module does all of them:
- TCP_NODELAY on the socket (the broker sets it too: `set_tcp_nodelay true`), or
  Nagle meets delayed ACKs and every hop waits ~40 ms;
- the network runs on paho's thread, so reading and writing never wait for the
  event loop, and the loop never waits for the network;
- `publish` returns a future at once; callers gather them instead of awaiting
  each PUBACK before taking the next message.

With `manual_ack=True` an inbound QoS 1 message is acknowledged only when the
caller says so (`Inbound.ack()`), after its work is committed: a crash before
that makes the broker deliver it again.

Invariant: paho callbacks run on the network thread and touch no asyncio state
directly; they hand over with `call_soon_threadsafe`. Because `publish` and
`subscribe` are called on the loop thread, a completion scheduled by the network
thread always runs after the caller registered its future.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

log = logging.getLogger(__name__)

Transport = Literal["tcp", "websockets"]


class MqttError(Exception):
    """Base of this module's errors."""


class NotAuthorized(MqttError):
    """The broker refused the credentials (or the client id for them)."""


class ConnectFailed(MqttError):
    """No connection could be made (broker down, timeout, refused for another reason)."""


class PublishRefused(MqttError):
    """The broker answered a publish with a failure reason code (MQTT 5)."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int
    transport: Transport = "tcp"
    ws_path: str = "/mqtt"


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass(frozen=True, slots=True)
class Inbound:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    mid: int
    _client: paho.Client = field(repr=False, compare=False)

    def ack(self) -> None:
        """Acknowledge to the broker (only meaningful with `manual_ack=True`, QoS 1)."""
        if self.qos > 0:
            self._client.ack(self.mid, self.qos)


def _set_nodelay(_client: paho.Client, _userdata: Any, sock: Any) -> None:
    raw = getattr(sock, "_socket", sock)  # paho's WebsocketWrapper keeps the TCP socket there
    try:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):  # a Unix socket, or a wrapper without one
        log.debug("TCP_NODELAY not set on %r", sock)


class AsyncMqtt:
    """One MQTT 5 connection. Use `async with AsyncMqtt(...) as mqtt:`."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        client_id: str,
        username: str,
        password: str,
        clean_start: bool = False,
        session_expiry: int = 7 * 24 * 3600,
        will: Will | None = None,
        manual_ack: bool = False,
        receive_maximum: int = 1000,
        reconnect: bool = True,
        max_backoff: float = 5.0,
    ) -> None:
        self.endpoint = endpoint
        self.client_id = client_id
        self._clean_start = clean_start
        self._session_expiry = session_expiry
        self._receive_maximum = receive_maximum
        self._reconnect = reconnect
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv5,
            transport=endpoint.transport,
            manual_ack=manual_ack,
            reconnect_on_failure=reconnect,
        )
        if endpoint.transport == "websockets":
            self._client.ws_set_options(path=endpoint.ws_path)
        self._client.username_pw_set(username, password)
        self._client.max_inflight_messages_set(1000)
        self._client.max_queued_messages_set(0)
        self._client.reconnect_delay_set(min_delay=1, max_delay=max(1, int(max_backoff)))
        if will is not None:
            self._client.will_set(will.topic, will.payload, will.qos, will.retain)
        self._client.on_socket_open = _set_nodelay
        self._client.on_connect = self._on_connect_thread
        self._client.on_disconnect = self._on_disconnect_thread
        self._client.on_message = self._on_message_thread
        self._client.on_publish = self._on_publish_thread
        self._client.on_subscribe = self._on_subscribe_thread
        self._loop: asyncio.AbstractEventLoop | None = None
        self._first_connect: asyncio.Future[None] | None = None
        self._pending_pub: dict[int, asyncio.Future[None]] = {}
        self._pending_sub: dict[int, asyncio.Future[list[ReasonCode]]] = {}
        self._subscriptions: dict[str, int] = {}
        self._messages: asyncio.Queue[Inbound] = asyncio.Queue()
        self.connected = asyncio.Event()
        self.disconnected = asyncio.Event()
        self.connect_count = 0
        self.refused: MqttError | None = None
        self._handoff: deque[tuple[Any, tuple[Any, ...]]] = deque()
        self._drain_scheduled = False
        self._tasks: set[asyncio.Task[list[int]]] = set()

    # --- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> AsyncMqtt:
        await self.connect()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.disconnect()

    async def connect(self, timeout: float = 10.0) -> None:
        self._loop = asyncio.get_running_loop()
        self._first_connect = self._loop.create_future()
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self._session_expiry
        props.ReceiveMaximum = self._receive_maximum
        try:
            self._client.connect_async(
                self.endpoint.host,
                self.endpoint.port,
                keepalive=30,
                clean_start=self._clean_start,
                properties=props,
            )
        except (OSError, ValueError) as exc:
            raise ConnectFailed(str(exc)) from exc
        self._client.loop_start()
        try:
            await asyncio.wait_for(asyncio.shield(self._first_connect), timeout)
        except (TimeoutError, MqttError):
            self._client.loop_stop()
            if self._first_connect.done() and self._first_connect.exception():
                raise
            raise ConnectFailed(f"no CONNACK from {self.endpoint} in {timeout}s") from None

    async def disconnect(self) -> None:
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)
        pending: list[asyncio.Future[Any]] = [
            *self._pending_pub.values(),
            *self._pending_sub.values(),
        ]
        for future in pending:
            if not future.done():
                future.set_exception(MqttError("disconnected"))
        self._pending_pub.clear()
        self._pending_sub.clear()

    def drop_connection(self) -> None:
        """Close the socket without DISCONNECT: the broker publishes the Last Will."""
        sock = self._client.socket()
        if sock is not None:
            sock.close()

    # --- operations ------------------------------------------------------------------

    def publish(
        self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False
    ) -> asyncio.Future[None]:
        """Queue a publish; the future completes when the broker acknowledged it."""
        loop = self._require_loop()
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        future: asyncio.Future[None] = loop.create_future()
        if qos == 0:
            future.set_result(None)
        else:
            self._pending_pub[info.mid] = future
        return future

    async def subscribe(self, filters: Iterable[tuple[str, int]]) -> list[int]:
        """Subscribe and remember the filters (re-subscribed if a session is lost).

        Returns the granted QoS per filter, or 128+ for a refusal.
        """
        wanted = list(filters)
        for topic, qos in wanted:
            self._subscriptions[topic] = qos
        return await self._send_subscribe(wanted)

    async def _send_subscribe(self, wanted: list[tuple[str, int]]) -> list[int]:
        loop = self._require_loop()
        _rc, mid = self._client.subscribe(wanted)
        if mid is None:
            raise MqttError("subscribe could not be sent")
        future: asyncio.Future[list[ReasonCode]] = loop.create_future()
        self._pending_sub[mid] = future
        codes = await future
        return [code.value for code in codes]

    async def messages(self) -> AsyncIterator[Inbound]:
        while True:
            yield await self._messages.get()

    def get_message_nowait(self) -> Inbound | None:
        try:
            return self._messages.get_nowait()
        except asyncio.QueueEmpty:
            return None

    async def next_message(self, timeout: float | None = None) -> Inbound:
        return await asyncio.wait_for(self._messages.get(), timeout)

    def _require_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise MqttError("not connected yet")
        return self._loop

    # --- paho callbacks (network thread) ---------------------------------------------

    def _call(self, func: Any, *args: Any) -> None:
        """Hand a completion to the loop thread.

        Completions queue in a deque and the loop is woken once per drain, not per
        packet: under load one wake-up carries many, which saves the self-pipe
        write and the GIL hand-over that each `call_soon_threadsafe` costs.
        Ordering argument: the flag is cleared before draining, and a producer
        appends before it reads the flag, so nothing is left behind.
        """
        self._handoff.append((func, args))
        if not self._drain_scheduled:
            self._drain_scheduled = True
            loop = self._loop
            if loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(self._drain_handoff)

    def _drain_handoff(self) -> None:
        self._drain_scheduled = False
        handoff = self._handoff
        while handoff:
            func, args = handoff.popleft()
            func(*args)

    def _on_connect_thread(
        self, _c: paho.Client, _u: Any, flags: Any, reason: ReasonCode, _p: Any
    ) -> None:
        self._call(self._on_connect, reason, bool(getattr(flags, "session_present", False)))

    def _on_disconnect_thread(
        self, _c: paho.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any
    ) -> None:
        self._call(self._on_disconnect, reason)

    def _on_message_thread(self, client: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        inbound = Inbound(msg.topic, bytes(msg.payload), msg.qos, msg.retain, msg.mid, client)
        self._call(self._messages.put_nowait, inbound)

    def _on_publish_thread(
        self, _c: paho.Client, _u: Any, mid: int, reason: ReasonCode, _p: Any
    ) -> None:
        self._call(self._on_published, mid, reason)

    def _on_subscribe_thread(
        self, _c: paho.Client, _u: Any, mid: int, codes: list[ReasonCode], _p: Any
    ) -> None:
        self._call(self._on_subscribed, mid, codes)

    # --- completions (loop thread) ---------------------------------------------------

    def _on_connect(self, reason: ReasonCode, session_present: bool) -> None:
        first = self._first_connect
        if reason.is_failure:
            if reason.value in (0x86, 0x87, 0x85):  # bad credentials, not authorized, bad id
                # Credentials do not heal by retrying (a revoked device): stop here.
                error: MqttError = NotAuthorized(str(reason))
                self.refused = error
                self._client.disconnect()
            else:
                error = ConnectFailed(str(reason))
            if first is not None and not first.done():
                first.set_exception(error)
            log.warning("mqtt %s: connect refused: %s", self.client_id, reason)
            return
        self.connect_count += 1
        self.disconnected.clear()
        self.connected.set()
        if first is not None and not first.done():
            first.set_result(None)
        elif self._subscriptions:
            # Subscribe again even when the broker says it kept our session: after
            # a Mosquitto 2.0 restart a kept `$share` subscription was not served
            # (tests/integration/test_order_and_faults.py), and subscribing twice
            # to the same filter is harmless.
            task = asyncio.get_running_loop().create_task(
                self._send_subscribe(list(self._subscriptions.items())), name="resubscribe"
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _on_disconnect(self, reason: ReasonCode) -> None:
        self.connected.clear()
        self.disconnected.set()
        if reason.is_failure:
            log.info("mqtt %s: disconnected: %s", self.client_id, reason)

    def _on_published(self, mid: int, reason: ReasonCode) -> None:
        future = self._pending_pub.pop(mid, None)
        if future is None or future.done():
            return
        if reason.is_failure:
            future.set_exception(PublishRefused(str(reason)))
        else:
            future.set_result(None)

    def _on_subscribed(self, mid: int, codes: list[ReasonCode]) -> None:
        future = self._pending_sub.pop(mid, None)
        if future is not None and not future.done():
            future.set_result(codes)
