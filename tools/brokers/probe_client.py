"""A small MQTT client for the broker probe: paho-mqtt on a thread of its own,
awaited from asyncio.

Why not `bridge.mqtt.AsyncMqtt`: it speaks MQTT 5 only, reconnects by itself
and hides the details the probe looks at (the CONNACK's session-present flag,
reason codes, the DUP flag of a redelivery, a broker that closes the socket
instead of answering). This client does one connection and no reconnect: after a
loss it stays down, so a test of session takeover cannot turn into two clients
taking the id from each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from dataclasses import dataclass
from typing import Any, TypeVar

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

# Where to connect and the Last Will: the same shapes as the services' client.
from bridge.mqtt import Endpoint, Will

T = TypeVar("T")
# MQTT's protocol levels: 5 for MQTT 5, 4 for MQTT 3.1.1.
MQTT5 = 5
MQTT311 = 4
_PAHO_PROTOCOL: dict[int, MQTTProtocolVersion] = {
    MQTT5: paho.MQTTv5,
    MQTT311: paho.MQTTv311,
}
# How long the network thread waits in select() per turn.
LOOP_TURN = 0.05


class ProbeError(Exception):
    """Base of this module's errors."""


class ConnectRefused(ProbeError):
    """The broker answered the CONNECT with a refusal."""


class ConnectionLost(ProbeError):
    """No connection, or it closed before the broker answered."""


class PublishRefused(ProbeError):
    """The broker answered a QoS 1 publish with a failure reason code (MQTT 5)."""


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    mid: int


@dataclass(frozen=True, slots=True)
class Connack:
    session_present: bool
    # MQTT 5 CONNACK properties by paho's names (MaximumPacketSize, ...); empty
    # for MQTT 3.1.1.
    properties: dict[str, Any]


class ProbeClient:
    """One connection. `async with ProbeClient(...) as c:` connects and closes."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        client_id: str,
        username: str,
        password: str,
        protocol: int = MQTT5,
        clean_start: bool = True,
        session_expiry: int = 0,
        will: Will | None = None,
        manual_ack: bool = False,
    ) -> None:
        self.endpoint = endpoint
        self.protocol = protocol
        self._clean_start = clean_start
        self._session_expiry = session_expiry
        self._paho = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            # MQTT 3.1.1 has the flag on the client; MQTT 5 on each connect.
            clean_session=None if protocol == MQTT5 else clean_start,
            protocol=_PAHO_PROTOCOL[protocol],
            transport=endpoint.transport,
            reconnect_on_failure=False,
            manual_ack=manual_ack,
        )
        if endpoint.transport == "websockets":
            self._paho.ws_set_options(path=endpoint.ws_path)
        self._paho.username_pw_set(username, password)
        if will is not None:
            self._paho.will_set(will.topic, will.payload, will.qos, will.retain)
        self._paho.on_connect = self._on_connect
        self._paho.on_disconnect = self._on_disconnect
        self._paho.on_message = self._on_message
        self._paho.on_publish = self._on_publish
        self._paho.on_subscribe = self._on_subscribe
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._connack: asyncio.Future[Connack] | None = None
        self._pending_pub: dict[int, asyncio.Future[None]] = {}
        self._pending_sub: dict[int, asyncio.Future[list[int]]] = {}
        self._messages: asyncio.Queue[Message] = asyncio.Queue()
        self.connected = asyncio.Event()
        self.disconnected = asyncio.Event()
        # Why the connection ended (paho's reason), once it has.
        self.disconnect_reason: str | None = None
        self.connack: Connack | None = None

    async def __aenter__(self) -> ProbeClient:
        await self.connect()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    # --- lifecycle --------------------------------------------------------------

    async def connect(self, timeout: float = 5.0) -> Connack:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._connack = loop.create_future()
        properties = None
        if self.protocol == MQTT5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = self._session_expiry
        clean_start: paho.CleanStartOption = (
            self._clean_start if self.protocol == MQTT5 else paho.MQTT_CLEAN_START_FIRST_ONLY
        )
        try:
            async with asyncio.timeout(timeout):
                # TCP connect and WebSocket handshake block: off the event loop.
                await loop.run_in_executor(
                    None,
                    lambda: self._paho.connect(
                        self.endpoint.host,
                        self.endpoint.port,
                        keepalive=30,
                        clean_start=clean_start,
                        properties=properties,
                    ),
                )
                self._thread = threading.Thread(
                    target=self._network, name=f"probe-{self.endpoint.port}", daemon=True
                )
                self._thread.start()
                return await self._connack
        except TimeoutError:
            await self.close()
            raise ConnectionLost(f"no CONNACK in {timeout} s") from None
        except OSError as exc:
            await self.close()
            raise ConnectionLost(f"{self._where()}: {exc}") from exc
        except ProbeError:
            await self.close()
            raise

    def _where(self) -> str:
        return f"{self.endpoint.transport}://{self.endpoint.host}:{self.endpoint.port}"

    def _network(self) -> None:
        """paho's network loop until the connection ends or we close it."""
        while not self._stopping.is_set():
            if self._paho.loop(LOOP_TURN) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break
        # paho reports a loss through on_disconnect only after CONNACK; a socket
        # the broker closed before answering ends here too.
        self._to_loop(self._ended, "connection closed")

    async def close(self) -> None:
        """DISCONNECT (the Last Will is not sent) and stop the thread."""
        if self.connected.is_set():
            self._paho.disconnect()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.disconnected.wait(), 2)
        self._stopping.set()
        thread = self._thread
        if thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, thread.join, 2)
        with contextlib.suppress(OSError):
            sock = self._paho.socket()
            if sock is not None:
                sock.close()

    def drop(self) -> None:
        """Cut the connection without DISCONNECT, as a dead network would: the
        broker is to publish the Last Will."""
        sock = self._paho.socket()
        if sock is None:
            return
        # paho's WebSocket wrapper keeps the TCP socket in `_socket`.
        raw: Any = getattr(sock, "_socket", sock)
        with contextlib.suppress(OSError):
            raw.shutdown(socket.SHUT_RDWR)

    # --- operations -------------------------------------------------------------

    async def subscribe(self, filters: list[tuple[str, int]], timeout: float = 5.0) -> list[int]:
        """Granted QoS per filter, or a failure code (0x80 and above)."""
        future: asyncio.Future[list[int]] = self._require_loop().create_future()
        rc, mid = self._paho.subscribe(filters)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            raise ConnectionLost(f"subscribe not sent: {paho.error_string(rc)}")
        self._pending_sub[mid] = future
        return await self._answer(future, timeout, "SUBACK")

    async def publish(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False, timeout: float = 5.0
    ) -> None:
        """Publish; at QoS 1, return once the broker acknowledged it."""
        future: asyncio.Future[None] = self._require_loop().create_future()
        info = self._paho.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise ConnectionLost(f"publish not sent: {paho.error_string(info.rc)}")
        if qos == 0:
            return
        # The PUBACK reaches `_published` through the event loop, so after this.
        self._pending_pub[info.mid] = future
        await self._answer(future, timeout, "PUBACK")

    async def _answer(self, future: asyncio.Future[T], timeout: float, what: str) -> T:
        lost = asyncio.ensure_future(self.disconnected.wait())
        waiting: set[asyncio.Future[Any]] = {future, lost}
        try:
            done, _ = await asyncio.wait(waiting, timeout=timeout, return_when="FIRST_COMPLETED")
        finally:
            lost.cancel()
        if future in done:
            return future.result()
        if lost in done:
            raise ConnectionLost(f"connection closed before the {what} ({self.disconnect_reason})")
        raise ConnectionLost(f"no {what} in {timeout} s")

    def ack(self, message: Message) -> None:
        """Acknowledge a QoS 1 message (with `manual_ack=True`)."""
        self._paho.ack(message.mid, message.qos)

    async def next_message(self, timeout: float) -> Message:
        return await asyncio.wait_for(self._messages.get(), timeout)

    async def drain(self, quiet: float = 0.5) -> list[Message]:
        """Everything that arrives until `quiet` seconds pass with nothing new."""
        received = []
        while True:
            try:
                received.append(await self.next_message(quiet))
            except TimeoutError:
                return received

    async def wait_for(self, topic: str, timeout: float) -> Message:
        """The next message on `topic` (others that arrive first are dropped)."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self._messages.get()
                if message.topic == topic:
                    return message

    # --- paho callbacks, on the network thread ------------------------------------

    def _require_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise ConnectionLost("not connected")
        return self._loop

    def _to_loop(self, func: Any, *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(func, *args)

    def _on_connect(
        self, _c: paho.Client, _u: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        properties = props.json() if self.protocol == MQTT5 and props is not None else {}
        self._to_loop(self._connected, bool(flags.session_present), reason, properties)

    def _connected(self, session_present: bool, reason: ReasonCode, props: dict[str, Any]) -> None:
        future = self._connack
        if future is None or future.done():
            return
        if reason.is_failure:
            future.set_exception(ConnectRefused(str(reason)))
            return
        self.connack = Connack(session_present, props)
        self.connected.set()
        future.set_result(self.connack)

    def _on_disconnect(
        self, _c: paho.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any
    ) -> None:
        self._to_loop(self._ended, str(reason))

    def _ended(self, reason: str) -> None:
        if self.disconnected.is_set():
            return
        self.disconnect_reason = reason
        self.connected.clear()
        self.disconnected.set()
        future = self._connack
        if future is not None and not future.done():
            future.set_exception(ConnectionLost(f"closed before CONNACK ({reason})"))

    def _on_message(self, _c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        message = Message(
            msg.topic, bytes(msg.payload), msg.qos, msg.retain, bool(msg.dup), msg.mid
        )
        self._to_loop(self._messages.put_nowait, message)

    def _on_publish(self, _c: paho.Client, _u: Any, mid: int, reason: ReasonCode, _p: Any) -> None:
        self._to_loop(self._published, mid, reason)

    def _published(self, mid: int, reason: ReasonCode) -> None:
        future = self._pending_pub.pop(mid, None)
        if future is None or future.done():
            return
        if reason.is_failure:
            future.set_exception(PublishRefused(str(reason)))
        else:
            future.set_result(None)

    def _on_subscribe(
        self, _c: paho.Client, _u: Any, mid: int, codes: list[ReasonCode], _p: Any
    ) -> None:
        self._to_loop(self._subscribed, mid, [code.value for code in codes])

    def _subscribed(self, mid: int, codes: list[int]) -> None:
        future = self._pending_sub.pop(mid, None)
        if future is not None and not future.done():
            future.set_result(codes)
