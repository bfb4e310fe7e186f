"""An asyncio MQTT 5 client: paho-mqtt's protocol code driven by the event loop.

Why not a plain aiomqtt loop, and why not paho's own thread: see
docs/architecture.md ("Latency"). In short:
- TCP_NODELAY on the socket (the broker sets it too: `set_tcp_nodelay true`), or
  Nagle meets delayed ACKs and every hop waits ~40 ms;
- paho reads and writes from the event loop (`add_reader`/`add_writer`), so no
  thread competes for the GIL with the loop and no packet crosses threads;
- `publish` returns a future at once; callers gather them instead of awaiting
  each PUBACK before taking the next message.

With `manual_ack=True` an inbound QoS 1 message is acknowledged only when the
caller says so (`Inbound.ack()`), after its work is committed: a crash before
that makes the broker deliver it again.

Reconnecting is ours (paho only reconnects in its own thread): after an
unexpected loss the client connects again with backoff, forever, unless the
broker refused the credentials. The blocking part of a connect (TCP connect and
WebSocket handshake) runs in a worker thread; paho's socket callbacks that fire
there are handed to the loop with `call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

log = logging.getLogger(__name__)

Transport = Literal["tcp", "websockets"]
MISC_INTERVAL = 1.0  # keepalive pings and timeouts (paho's loop_misc)
# QoS 1 publishes on the wire awaiting their PUBACK; more wait in our queue. Below
# the broker's receive maximum (`max_inflight_messages` in mosquitto.conf). Done
# here rather than by paho, whose limit rescans every queued message on each
# PUBACK (quadratic under a backlog).
MAX_IN_FLIGHT = 500


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


class _BufferedSocket:
    """paho's socket, with one `recv` and one `send` where paho makes many.

    Reads: paho reads a byte or two at a time (about ten system calls per
    message, measured with strace); here one large `recv` feeds them. Invariant
    the reader relies on: bytes left here are consumed before waiting for the
    socket again (see `AsyncMqtt._readable`).

    Writes: paho sends every packet with its own `send` (a service answering a
    message writes four: the PUBACK, two copies, the ack), and each send on
    loopback runs the whole TCP path and wakes the broker: 23% of the
    persistence service's wall-clock samples at 1,000 msg/s (py-spy; little of
    it CPU: the gain is fewer wake-ups, see docs/architecture.md). Here paho's
    sends only append; `flush` writes everything queued in one `send`, in the
    same loop turn. Above `LIMIT` unsent bytes paho is told to wait (BlockingIOError),
    which keeps its packets queued in paho, as without this buffer.

    paho's WebSocket wrapper frames each `send` call, so a flush is one frame
    holding several MQTT packets (the MQTT spec allows it; Mosquitto and the
    gateway read them as a stream). That wrapper answers 0 for "partly sent,
    call again with the same bytes", a plain socket the count sent: `_sending`
    is kept and offered again until it is gone, which serves both.
    """

    CHUNK = 65536
    LIMIT = 1 << 20

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self._data = b""
        self._pos = 0
        self._queued = bytearray()
        self._sending = b""

    def recv(self, size: int) -> bytes:
        if self._pos >= len(self._data):
            self._data = self.inner.recv(self.CHUNK)  # b"" (closed) or BlockingIOError
            self._pos = 0
        chunk = self._data[self._pos : self._pos + size]
        self._pos += len(chunk)
        return chunk

    def buffered(self) -> int:
        return len(self._data) - self._pos

    def send(self, data: bytes | bytearray) -> int:
        if self.unsent() >= self.LIMIT:
            raise BlockingIOError
        self._queued += data
        return len(data)

    def unsent(self) -> int:
        return len(self._sending) + len(self._queued)

    def flush(self) -> bool:
        """Send what is queued; True when nothing is left. Raises OSError when
        the connection is broken (BlockingIOError is not raised: False)."""
        while self._sending or self._queued:
            if not self._sending:
                self._sending = bytes(self._queued)
                self._queued.clear()
            try:
                sent = self.inner.send(self._sending)
            except BlockingIOError:
                return False
            if sent == 0:
                return False
            self._sending = self._sending[sent:]
        return True

    def fileno(self) -> int:
        return int(self.inner.fileno())

    def close(self) -> None:
        # A DISCONNECT queued just before paho closes the socket goes out first,
        # or the broker would publish the Last Will of a client that said goodbye.
        with contextlib.suppress(OSError):
            self.flush()
        self.inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class _Client(paho.Client):
    """paho's client, with a cheaper PUBACK.

    A QoS 1 publish costs its sender one PUBACK, and a service publishing a
    stored message answers a send with three publishes. paho decodes each PUBACK
    into a new ReasonCode and Properties (both built by parsing tables), about
    15 us: a tenth of the persistence service's CPU at 1,000 msg/s. Mosquitto
    sends a success as the bare packet id (MQTT 5, 3.4.2.1: reason code and
    properties are omitted), which needs neither; anything longer takes paho's
    own path."""

    _SUCCESS = ReasonCode(PacketTypes.PUBACK)
    _NO_PROPERTIES = Properties(PacketTypes.PUBACK)  # type: ignore[no-untyped-call]

    def _handle_pubackcomp(self, cmd: Literal["PUBACK", "PUBCOMP"]) -> MQTTErrorCode:
        packet = self._in_packet["packet"]
        if cmd != "PUBACK" or len(packet) != 2:
            return super()._handle_pubackcomp(cmd)
        mid = (packet[0] << 8) | packet[1]
        with self._out_message_mutex:
            if mid in self._out_messages:
                # The shared instances are only read (`AsyncMqtt._on_publish`).
                return self._do_on_publish(mid, self._SUCCESS, self._NO_PROPERTIES)
        return MQTTErrorCode.MQTT_ERR_SUCCESS


def _raw_socket(sock: Any) -> socket.socket:
    sock = getattr(sock, "inner", sock)  # our buffered socket
    # paho's WebsocketWrapper keeps the TCP socket in `_socket`.
    raw: socket.socket = getattr(sock, "_socket", sock)
    return raw


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
        self._max_backoff = max_backoff
        self._client = _Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv5,
            transport=endpoint.transport,
            manual_ack=manual_ack,
        )
        if endpoint.transport == "websockets":
            self._client.ws_set_options(path=endpoint.ws_path)
        self._client.username_pw_set(username, password)
        self._client.max_inflight_messages_set(0)  # unlimited: see MAX_IN_FLIGHT
        self._client.max_queued_messages_set(0)
        if will is not None:
            self._client.will_set(will.topic, will.payload, will.qos, will.retain)
        self._client.on_socket_open = self._on_socket_open
        self._client.on_socket_close = self._on_socket_close
        self._client.on_socket_register_write = self._on_register_write
        # No unregister callback: paho's queue being empty does not mean ours is;
        # the writer is removed once both are (`_writable`).
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_publish = self._on_publish
        self._client.on_subscribe = self._on_subscribe
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._first_connect: asyncio.Future[None] | None = None
        self._pending_pub: dict[int, asyncio.Future[None]] = {}
        self._held: deque[tuple[str, bytes | str, bool, asyncio.Future[None]]] = deque()
        self._pending_sub: dict[int, asyncio.Future[list[ReasonCode]]] = {}
        self._subscriptions: dict[str, int] = {}
        self._messages: asyncio.Queue[Inbound] = asyncio.Queue()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._misc_task: asyncio.Task[None] | None = None
        self._reconnecting: asyncio.Task[None] | None = None
        self._closing = False
        self._write_scheduled = False
        self._watching_write: _BufferedSocket | None = None
        self.connected = asyncio.Event()
        self.disconnected = asyncio.Event()
        self.connect_count = 0
        self.refused: MqttError | None = None
        # Plain counts, read by the metrics collector (core/metrics.py) on scrape.
        self.published_count = 0
        self.received_count = 0

    # --- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> AsyncMqtt:
        await self.connect()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.disconnect()

    async def connect(self, timeout: float = 10.0) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._closing = False
        self._first_connect = self._loop.create_future()
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self._session_expiry
        props.ReceiveMaximum = self._receive_maximum
        # Stores the parameters only; `_open` makes the connection.
        self._client.connect_async(
            self.endpoint.host,
            self.endpoint.port,
            keepalive=30,
            clean_start=self._clean_start,
            properties=props,
        )
        try:
            async with asyncio.timeout(timeout):
                await self._open()
                await asyncio.shield(self._first_connect)
        except TimeoutError:
            self._abandon()
            raise ConnectFailed(f"no CONNACK from {self.endpoint} in {timeout}s") from None
        except MqttError:
            self._abandon()
            raise
        except (OSError, ValueError) as exc:
            self._abandon()
            raise ConnectFailed(f"{self.endpoint}: {exc}") from exc

    async def _open(self) -> None:
        """TCP connect (+ WebSocket handshake) and send CONNECT; off the loop."""
        loop = self._require_loop()
        rc = await loop.run_in_executor(None, self._client.reconnect)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise ConnectFailed(f"{self.endpoint}: {paho.error_string(rc)}")

    def _abandon(self) -> None:
        self._closing = True
        with contextlib.suppress(Exception):
            self._client._sock_close()

    async def disconnect(self) -> None:
        self._closing = True
        if self._reconnecting is not None:
            self._reconnecting.cancel()
        if self.connected.is_set():
            self._client.disconnect()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.disconnected.wait(), 2)
        self._client._sock_close()
        for task in [*self._tasks, *(t for t in (self._misc_task,) if t is not None)]:
            task.cancel()
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
        """Cut the connection without DISCONNECT: the broker publishes the Last Will,
        and the client reconnects as after any network loss."""
        sock = self._client.socket()
        if sock is not None:
            with contextlib.suppress(OSError):
                _raw_socket(sock).shutdown(socket.SHUT_RDWR)

    # --- operations ------------------------------------------------------------------

    def publish(
        self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False
    ) -> asyncio.Future[None]:
        """Queue a publish; the future completes when the broker acknowledged it.

        While disconnected, QoS 1 publishes wait in paho and go out after the
        reconnect (the future completes then)."""
        future: asyncio.Future[None] = self._require_loop().create_future()
        self.published_count += 1
        if qos == 0:
            self._client.publish(topic, payload, qos=0, retain=retain)
            future.set_result(None)
        elif len(self._pending_pub) >= MAX_IN_FLIGHT or self._held:
            self._held.append((topic, payload, retain, future))
        else:
            self._send_qos1(topic, payload, retain, future)
        return future

    def flush(self) -> None:
        """Write what is queued now, not on the event loop's next turn: after a
        publish whose latency matters, before more work delays that turn."""
        if self.connected.is_set():
            self._write_now()

    def _send_qos1(
        self, topic: str, payload: bytes | str, retain: bool, future: asyncio.Future[None]
    ) -> None:
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        # The PUBACK cannot have arrived yet: paho writes from the loop, later.
        self._pending_pub[info.mid] = future

    def _release_held(self) -> None:
        while self._held and len(self._pending_pub) < MAX_IN_FLIGHT:
            self._send_qos1(*self._held.popleft())

    async def subscribe(self, filters: Iterable[tuple[str, int]]) -> list[int]:
        """Subscribe and remember the filters (subscribed again after a reconnect).

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

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = self._require_loop().create_task(coro, name=f"{self.client_id}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- sockets: paho asks, the event loop watches -----------------------------------

    def _on_loop(self, func: Callable[..., None], *args: Any) -> None:
        """Run on the loop thread: now if we are on it, else as soon as it can."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if threading.get_ident() == self._loop_thread:
            func(*args)
        else:
            loop.call_soon_threadsafe(func, *args)

    def _on_socket_open(self, client: paho.Client, _u: Any, sock: Any) -> None:
        with contextlib.suppress(OSError):
            _raw_socket(sock).setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # paho reads through `_sock`; it has no public way to wrap it.
        buffered = _BufferedSocket(sock)
        client._sock = buffered
        self._on_loop(self._watch, buffered)

    def _watch(self, sock: Any) -> None:
        loop = self._require_loop()
        loop.add_reader(sock, self._readable)
        if self._misc_task is None or self._misc_task.done():
            self._misc_task = loop.create_task(self._misc_forever(), name="mqtt-misc")

    def _readable(self) -> None:
        client = self._client
        client.loop_read()
        # Whole packets may still sit in the read buffer, where the event loop
        # cannot see them: read on until it is empty (paho stops after a few).
        sock = client._sock
        while isinstance(sock, _BufferedSocket) and sock.buffered():
            client.loop_read()
            if client._sock is not sock:
                return

    def _on_socket_close(self, _c: paho.Client, _u: Any, sock: Any) -> None:
        self._on_loop(self._unwatch, sock)

    def _unwatch(self, sock: Any) -> None:
        with contextlib.suppress(ValueError, OSError):
            self._require_loop().remove_reader(sock)
        self._unwatch_write(sock)

    def _on_register_write(self, _c: paho.Client, _u: Any, _sock: Any) -> None:
        self._on_loop(self._write_soon)

    def _write_soon(self) -> None:
        # Later in this turn of the loop, not from inside paho's publish call;
        # once for all the packets queued in this turn.
        if not self._write_scheduled:
            self._write_scheduled = True
            self._require_loop().call_soon(self._write_now)

    def _write_now(self) -> None:
        """Send paho's queued packets in one call; wait for the socket only if
        it cannot take everything.

        The usual case needs no writer registered at all: two epoll_ctl calls
        and a loop turn fewer per burst of publishes."""
        self._write_scheduled = False
        sock = self._client._sock
        if not isinstance(sock, _BufferedSocket) or self._watching_write is sock:
            return  # not connected, or waiting for the socket already
        if not self._drain(sock):
            self._watching_write = sock
            with contextlib.suppress(ValueError, OSError):
                self._require_loop().add_writer(sock, self._writable, sock)

    def _writable(self, sock: _BufferedSocket) -> None:
        if self._drain(sock):
            self._unwatch_write(sock)

    def _drain(self, sock: _BufferedSocket) -> bool:
        """Hand paho's packets to the buffer (while it has room) and send it;
        True when nothing is left to write on this socket."""
        if self._client._out_packet and sock.unsent() < sock.LIMIT:
            self._client.loop_write()
            if self._client._sock is not sock:
                return True  # paho closed it (a DISCONNECT went out)
        return self._flush(sock) and not self._client._out_packet

    def _flush(self, sock: _BufferedSocket) -> bool:
        try:
            return sock.flush()
        except OSError as exc:
            # Broken: end the connection the way paho notices, through the reader
            # (EOF), so that loss and reconnect take their usual path.
            log.info("mqtt %s: send failed: %s", self.client_id, exc)
            with contextlib.suppress(OSError):
                _raw_socket(sock).shutdown(socket.SHUT_RDWR)
            return False

    def _unwatch_write(self, sock: Any) -> None:
        if self._watching_write is sock:
            self._watching_write = None
        with contextlib.suppress(ValueError, OSError):
            self._require_loop().remove_writer(sock)

    async def _misc_forever(self) -> None:
        """Keepalive pings and timeouts, once a second while a socket is open."""
        while self._client.loop_misc() == MQTTErrorCode.MQTT_ERR_SUCCESS:  # noqa: ASYNC110
            await asyncio.sleep(MISC_INTERVAL)

    async def _reconnect_forever(self) -> None:
        delay = 0.1
        while not self._closing and self.refused is None:
            # Jittered: when a broker restart drops thousands of devices at once,
            # they must not all knock again at the same instants.
            await asyncio.sleep(random.uniform(delay / 2, delay))
            delay = min(delay * 2, self._max_backoff)
            try:
                await self._open()
            except (OSError, MqttError, ValueError) as exc:
                log.info("mqtt %s: reconnect failed: %s", self.client_id, exc)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.connected.wait(), 10)
            if self.connected.is_set():
                return

    # --- paho callbacks (always on the loop thread) ------------------------------------

    def _on_connect(
        self, _c: paho.Client, _u: Any, flags: Any, reason: ReasonCode, _p: Any
    ) -> None:
        first = self._first_connect
        if reason.is_failure:
            if reason.value in (0x86, 0x87, 0x85):  # bad credentials, not authorized, bad id
                # Credentials do not heal by retrying (a revoked device): stop here.
                error: MqttError = NotAuthorized(str(reason))
                self.refused = error
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
            self._spawn(self._send_subscribe(list(self._subscriptions.items())), "resubscribe")

    def _on_disconnect(
        self, _c: paho.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any
    ) -> None:
        was_connected = self.connected.is_set()
        self.connected.clear()
        self.disconnected.set()
        if reason.is_failure:
            log.info("mqtt %s: disconnected: %s", self.client_id, reason)
        reconnecting = self._reconnecting is not None and not self._reconnecting.done()
        if (
            was_connected
            and self._reconnect
            and not self._closing
            and self.refused is None
            and not reconnecting
        ):
            self._reconnecting = self._spawn(self._reconnect_forever(), "reconnect")

    @property
    def unacknowledged(self) -> int:
        """Publishes the broker has not acknowledged yet (on the wire or held)."""
        return len(self._pending_pub) + len(self._held)

    @property
    def inbound_queued(self) -> int:
        """Messages received and not yet taken by `messages()`."""
        return self._messages.qsize()

    def _on_message(self, client: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        self.received_count += 1
        self._messages.put_nowait(
            Inbound(msg.topic, bytes(msg.payload), msg.qos, msg.retain, msg.mid, client)
        )

    def _on_publish(self, _c: paho.Client, _u: Any, mid: int, reason: ReasonCode, _p: Any) -> None:
        future = self._pending_pub.pop(mid, None)
        if self._held:
            self._release_held()
        if future is None or future.done():
            return
        if reason.is_failure:
            future.set_exception(PublishRefused(str(reason)))
        else:
            future.set_result(None)

    def _on_subscribe(
        self, _c: paho.Client, _u: Any, mid: int, codes: list[ReasonCode], _p: Any
    ) -> None:
        future = self._pending_sub.pop(mid, None)
        if future is not None and not future.done():
            future.set_result(codes)
