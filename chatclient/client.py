"""`ChatClient`: one device's MQTT connection, with the contract's client duties.

What it does for its caller:
- a persistent session (clean start off), so the broker queues while offline;
- presence: retained `{"online": true}` on connect and after every reconnect,
  a Last Will saying `{"online": false}` for a lost connection, and an explicit
  offline publish on `close()` (a graceful DISCONNECT discards the Will);
- the outbox (chatclient/outbox.py): sends are kept until acked, re-sent with
  the same `client_msg_id` after a reconnect, in order per conversation;
- per-conversation de-duplication by `seq`, and gap filling from history, so the
  event stream holds each message once and in order when it can;
- after a reconnect, a `catch_up()` over HTTP for anything missed.

Concurrency: one reader task routes every inbound message; one watcher task
reacts to reconnects. Message emission (live, gap fill, catch-up) holds one
lock so the stream of a conversation never interleaves two sources.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import ValidationError

from bridge import topics
from bridge.mqtt import AsyncMqtt, Endpoint, MqttError, NotAuthorized, Transport, Will
from bridge.topics import CallAction, UpKind
from bridge.wire.base import WireError, parse_object
from bridge.wire.calls import (
    AcceptUp,
    CallEvent,
    CallMedia,
    CallState,
    EmptyUp,
    InviteUp,
    RecordUp,
)
from bridge.wire.messaging import (
    Ack,
    MessageKind,
    ReadEvent,
    ReadUp,
    SendMessage,
    StoredMessage,
    TypingEvent,
    TypingUp,
)
from bridge.wire.presence import PresenceEvent
from bridge.wire.support import DeskEvent, QueueSnapshot, SupportEvent
from chatclient.events import (
    AckEvent,
    CallEventReceived,
    CallStateChanged,
    DeskEventReceived,
    Event,
    MessageEvent,
    OtherEvent,
    PresenceChanged,
    QueueChanged,
    ReadReceiptEvent,
    SupportEventReceived,
    TypingIndicator,
)
from chatclient.http import ApiError, ChatHttp, DeviceCredentials
from chatclient.outbox import Outbox, new_client_msg_id
from chatclient.sequence import SeqTracker

log = logging.getLogger(__name__)

HISTORY_PAGE = 200  # the contract's maximum `limit`
RECONNECT_POLL_SECONDS = 1.0  # safety net in case a disconnect/connect pair was missed
# An ack normally comes within milliseconds; one this late means the send was lost.
ACK_TIMEOUT_SECONDS = 5.0
PRESENCE_TIMEOUT_SECONDS = 2.0
# Catch-up after a reconnect: attempts, and the first pause (doubling, jittered).
CATCH_UP_ATTEMPTS = 6
CATCH_UP_FIRST_RETRY_SECONDS = 1.0
STASH_MAX = 10_000
ENDED_CALLS_KEPT = 1_000
CALL_OVER = frozenset({"declined", "cancelled", "ended", "missed", "busy"})
CALL_LIVE = frozenset({"ringing", "incoming", "accepted"})

ONLINE = json.dumps({"online": True}).encode()
OFFLINE = json.dumps({"online": False}).encode()


def endpoint_for(creds: DeviceCredentials, transport: Transport) -> Endpoint:
    """The broker endpoint of these credentials for the chosen transport."""
    if transport == "tcp":
        return Endpoint(creds.tcp_host, creds.tcp_port, "tcp")
    url = urlsplit(creds.ws_url)
    if url.scheme == "wss":
        # bridge.mqtt.AsyncMqtt sets up no TLS; failing here beats a confusing timeout.
        raise ValueError(f"{creds.ws_url}: wss:// is not supported by bridge.mqtt yet")
    if url.scheme != "ws" or not url.hostname:
        raise ValueError(f"{creds.ws_url}: expected a ws://host[:port]/path URL")
    path = url.path or "/"
    if url.query:
        path = f"{path}?{url.query}"
    return Endpoint(url.hostname, url.port or 80, "websockets", path)


class ChatClient:
    """One device of one user. Use `async with ChatClient(creds, user_id) as client:`."""

    def __init__(
        self,
        creds: DeviceCredentials,
        user_id: str,
        *,
        transport: Transport = "websockets",
        http: ChatHttp | None = None,
        max_in_flight: int = 1,
    ) -> None:
        self.creds = creds
        self.user_id = user_id
        self.device_id = creds.device_id
        self.endpoint = endpoint_for(creds, transport)
        self.http = http
        self._max_in_flight = max_in_flight
        self.outbox = Outbox(self._publish_send, max_in_flight=max_in_flight)
        self._seq = SeqTracker()
        self._mqtt: AsyncMqtt | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        # Events skipped by `wait_for_event`, kept (in order) for later readers.
        self._stash: deque[Event] = deque(maxlen=STASH_MAX)
        self._emit_lock = asyncio.Lock()
        self._recovered = 0  # reconnects fully handled (re-sends + catch-up done)
        self._recovered_mark = 0
        self._recovered_signal = asyncio.Event()
        # Calls seen ending here (bounded): their later events are stale.
        self._ended_calls: deque[str] = deque(maxlen=ENDED_CALLS_KEPT)
        # The newest version seen of each support ticket.
        self._ticket_versions: dict[str, int] = {}

    # --- lifecycle --------------------------------------------------------------------

    async def __aenter__(self) -> ChatClient:
        await self.connect()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    @property
    def mqtt(self) -> AsyncMqtt:
        if self._mqtt is None:
            raise MqttError("not connected: call connect() first")
        return self._mqtt

    @property
    def connected(self) -> bool:
        return self._mqtt is not None and self._mqtt.connected.is_set()

    async def connect(self, timeout: float = 10.0) -> None:
        """Connect, subscribe to `user/{own id}/#`, announce presence.

        May be called again after `close()` (the same device coming back): the
        persistent session delivers what the broker queued meanwhile.
        """
        if self._mqtt is not None:
            raise RuntimeError("already connected")
        if self.outbox.closed:
            self.outbox = Outbox(self._publish_send, max_in_flight=self._max_in_flight)
        presence = topics.presence(self.user_id, self.device_id)
        mqtt = AsyncMqtt(
            self.endpoint,
            client_id=self.creds.client_id,
            username=self.creds.username,
            password=self.creds.password,
            clean_start=False,
            will=Will(presence, OFFLINE, qos=1, retain=True),
        )
        await mqtt.connect(timeout)
        self._mqtt = mqtt
        # Counted from here, so a reconnect during the setup below is not missed.
        connects = mqtt.connect_count
        try:
            # The reader starts first: a resumed session may already be delivering.
            self._spawn(self._read_forever(mqtt), "reader")
            granted = await asyncio.wait_for(
                mqtt.subscribe([(topics.user_root(self.user_id), 1)]), timeout
            )
            if any(code >= 0x80 for code in granted):
                raise NotAuthorized(f"subscription to {topics.user_root(self.user_id)} refused")
            await asyncio.wait_for(mqtt.publish(presence, ONLINE, qos=1, retain=True), timeout)
        except BaseException:
            await self._shutdown(graceful=False)
            raise
        self._spawn(self._watch_reconnects(mqtt, connects), "reconnect-watcher")
        # Sends queued before connecting (their publish raised) go out now.
        self.outbox.resend_all(only_failed=True)

    async def close(self) -> None:
        """Go offline gracefully: presence offline, DISCONNECT, fail unacked sends."""
        await self._shutdown(graceful=True)

    def drop(self) -> None:
        """Simulate a network loss: close the socket without DISCONNECT.

        The broker publishes the Last Will (presence offline); paho reconnects on
        its own, and the client then re-sends, re-announces and catches up (see
        `wait_reconnected`).
        """
        self._recovered_mark = self._recovered
        self.mqtt.drop_connection()

    async def wait_reconnected(self, timeout: float = 15.0) -> None:
        """Wait until the reconnect after the last `drop()` is fully handled
        (presence re-announced, unacked sends re-sent, catch-up done)."""
        async with asyncio.timeout(timeout):
            while self._recovered <= self._recovered_mark:
                await self._recovered_signal.wait()

    async def _shutdown(self, *, graceful: bool) -> None:
        mqtt, self._mqtt = self._mqtt, None
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        # Not `await task` under suppress(CancelledError): that would also swallow
        # a cancellation of this coroutine itself, which then carries on.
        await asyncio.gather(*tasks, return_exceptions=True)
        if mqtt is None:
            return
        if graceful and mqtt.connected.is_set():
            presence = topics.presence(self.user_id, self.device_id)
            try:
                await asyncio.wait_for(
                    mqtt.publish(presence, OFFLINE, qos=1, retain=True), PRESENCE_TIMEOUT_SECONDS
                )
            except (TimeoutError, MqttError):
                log.warning("%s: offline presence not confirmed", self.device_id)
        await mqtt.disconnect()
        # Inbound QoS 1 messages are acked to the broker on receipt: route what
        # already arrived instead of losing it with the connection object.
        while (inbound := mqtt.get_message_nowait()) is not None:
            await self._route_safely(inbound.topic, inbound.payload)
        self.outbox.close("client closed before the ack arrived")

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(
            coro, name=f"chatclient-{self.device_id}-{name}"
        )
        self._tasks.append(task)

    # --- sending ----------------------------------------------------------------------

    def send(self, conv_id: str, body: SendMessage) -> asyncio.Future[Ack]:
        """Queue a send through the outbox; the future resolves to its `Ack`.

        A `rejected` ack is a result, not an exception. The future fails only if
        the client closes first (`OutboxClosed`) or the broker refuses the
        publish itself (`PublishRefused`).
        """
        return self.outbox.send(conv_id, body)

    async def send_text(
        self,
        conv_id: str,
        text: str,
        *,
        client_msg_id: str | None = None,
        reply_to: str | None = None,
    ) -> Ack:
        body = SendMessage(
            client_msg_id=client_msg_id or new_client_msg_id(),
            kind="text",
            text=text,
            reply_to=reply_to,
        )
        # shield: a caller's timeout must not withdraw a send that is already queued.
        return await asyncio.shield(self.send(conv_id, body))

    async def send_media(
        self,
        conv_id: str,
        kind: MessageKind,
        media_id: str,
        text: str | None = None,
        *,
        client_msg_id: str | None = None,
        reply_to: str | None = None,
    ) -> Ack:
        body = SendMessage(
            client_msg_id=client_msg_id or new_client_msg_id(),
            kind=kind,
            text=text,
            media_id=media_id,
            reply_to=reply_to,
        )
        return await asyncio.shield(self.send(conv_id, body))

    async def mark_read(self, conv_id: str, seq: int) -> None:
        """Publish a read receipt (QoS 1) and wait for the broker's PUBACK."""
        topic = topics.conv_up(conv_id, UpKind.READ, self.user_id)
        await self.mqtt.publish(topic, ReadUp(seq=seq).model_dump_json().encode(), qos=1)

    async def set_typing(self, conv_id: str, typing: bool) -> None:
        """Publish a typing state (QoS 0: ephemeral, nothing to wait for)."""
        topic = topics.conv_up(conv_id, UpKind.TYPING, self.user_id)
        await self.mqtt.publish(topic, TypingUp(typing=typing).model_dump_json().encode(), qos=0)

    # --- calls ------------------------------------------------------------------------

    async def start_call(
        self, to: str, media: CallMedia = "audio", call_id: str | None = None
    ) -> str:
        """Invite `to`; returns the call id. The outcome arrives as call events
        (`ringing`, or `busy` / `error`)."""
        call_id = call_id or new_client_msg_id()
        await self._call_action(call_id, CallAction.INVITE, InviteUp(to=to, media=media))
        return call_id

    async def accept_call(self, call_id: str) -> None:
        """Answer on this device."""
        await self._call_action(call_id, CallAction.ACCEPT, AcceptUp(device_id=self.device_id))

    async def decline_call(self, call_id: str) -> None:
        await self._call_action(call_id, CallAction.DECLINE, EmptyUp())

    async def hang_up(self, call_id: str) -> None:
        """Cancel before an answer, end after one."""
        await self._call_action(call_id, CallAction.HANGUP, EmptyUp())

    async def start_recording(self, call_id: str) -> None:
        """Ask for server-side recording of an answered call (an extension)."""
        await self._call_action(call_id, CallAction.RECORD, RecordUp(recording=True))

    async def stop_recording(self, call_id: str) -> None:
        await self._call_action(call_id, CallAction.RECORD, RecordUp(recording=False))

    async def _call_action(
        self, call_id: str, action: CallAction, body: InviteUp | AcceptUp | EmptyUp | RecordUp
    ) -> None:
        topic = topics.call_up(call_id, action, self.user_id)
        await self.mqtt.publish(topic, body.model_dump_json().encode(), qos=1)

    async def wait_for_call_event(
        self, event: str | None = None, call_id: str | None = None, timeout: float | None = 10.0
    ) -> CallEvent:
        """The first call event with this name and/or call id."""

        def matches(candidate: Event) -> bool:
            return (
                isinstance(candidate, CallEventReceived)
                and (event is None or candidate.event.event == event)
                and (call_id is None or candidate.event.call_id == call_id)
            )

        found = await self.wait_for_event(matches, timeout)
        assert isinstance(found, CallEventReceived)
        return found.event

    def _publish_send(self, conv_id: str, payload: bytes) -> asyncio.Future[None]:
        # The outbox calls this; `self.mqtt` raises while not connected, and the
        # outbox keeps the send for `resend_all` on connect.
        topic = topics.conv_up(conv_id, UpKind.MSG, self.user_id)
        return self.mqtt.publish(topic, payload, qos=1)

    # --- receiving --------------------------------------------------------------------

    async def next_event(self, timeout: float | None = None) -> Event:
        """The next event; raises `TimeoutError` after `timeout` seconds."""
        if self._stash:
            return self._stash.popleft()
        with contextlib.suppress(asyncio.QueueEmpty):
            # Ready events never time out (wait_for(..., 0) would not even look).
            return self._events.get_nowait()
        return await asyncio.wait_for(self._events.get(), timeout)

    async def events(self) -> AsyncIterator[Event]:
        while True:
            yield await self.next_event()

    async def wait_for_event(
        self, predicate: Callable[[Event], bool], timeout: float | None = 10.0
    ) -> Event:
        """The first event matching `predicate`.

        Events skipped on the way are kept, in order, for `next_event`/`events`
        (up to the last 10,000), so waiting for one thing loses nothing else.
        """
        for index, event in enumerate(self._stash):
            if predicate(event):
                del self._stash[index]
                return event
        async with asyncio.timeout(timeout):
            while True:
                event = await self._events.get()
                if predicate(event):
                    return event
                self._stash.append(event)

    async def wait_for_message(
        self,
        predicate: Callable[[StoredMessage], bool] | None = None,
        timeout: float | None = 10.0,
    ) -> StoredMessage:
        """The first message matching `predicate` (any message when None)."""

        def matches(event: Event) -> bool:
            return isinstance(event, MessageEvent) and (
                predicate is None or predicate(event.message)
            )

        event = await self.wait_for_event(matches, timeout)
        assert isinstance(event, MessageEvent)
        return event.message

    @property
    def last_seq(self) -> dict[str, int]:
        """{conv_id: highest seq seen} (a copy)."""
        return self._seq.lasts()

    def seed(self, conv_id: str, seq: int) -> None:
        """Treat every message of `conv_id` up to `seq` as seen (e.g. after loading
        history): later ones are checked for gaps against it."""
        self._seq.seed(conv_id, seq)

    async def catch_up(self) -> int:
        """Fetch what was missed over HTTP (`/v1/sync`); returns how many messages
        were emitted. Messages already seen are dropped; order is kept."""
        http = self._require_http()
        known = self._seq.floors()
        conversations = await http.sync(known)
        emitted = 0
        async with self._emit_lock:
            for conversation in conversations:
                conv_id = str(conversation["conv_id"])
                for raw in conversation.get("messages") or []:
                    emitted += await self._accept(StoredMessage.model_validate(raw))
                if conversation.get("has_more") and conv_id in known:
                    # Only where we know our place: for a conversation new to this
                    # client, what sync chose to send is the starting window, and
                    # paging on could replay its whole history.
                    emitted += await self._page_forward(conv_id)
                last_seq = conversation.get("last_seq")
                if self._seq.floor(conv_id) is None and isinstance(last_seq, int):
                    # A conversation new to this client, without messages: a
                    # baseline, so its next live message is not taken for a gap.
                    self._seq.seed(conv_id, last_seq)
        return emitted

    # --- internals: routing -----------------------------------------------------------

    async def _read_forever(self, mqtt: AsyncMqtt) -> None:
        async for inbound in mqtt.messages():
            await self._route_safely(inbound.topic, inbound.payload)

    async def _route_safely(self, topic: str, payload: bytes) -> None:
        # One bad payload must not kill the reader (and with it every later event).
        try:
            await self._route(topic, payload)
        except (ValidationError, WireError) as error:
            log.warning("%s: unreadable payload on %s: %s", self.device_id, topic, error)
        except Exception:
            log.exception("%s: failed to handle a message on %s", self.device_id, topic)

    async def _route(self, topic: str, payload: bytes) -> None:
        if topic == topics.user_ack(self.user_id):
            ack = Ack.model_validate_json(payload)
            self.outbox.on_ack(ack)
            self._emit(AckEvent(ack))
            return
        if topic == topics.user_call(self.user_id):
            self._on_call_event(CallEvent.model_validate_json(payload))
            return
        if topic == topics.user_call_state(self.user_id):
            self._emit(CallStateChanged(CallState.model_validate_json(payload)))
            return
        if topic == topics.user_presence(self.user_id):
            self._emit(PresenceChanged(PresenceEvent.model_validate_json(payload)))
            return
        if topic == topics.user_support(self.user_id):
            self._on_support_event(SupportEvent.model_validate_json(payload))
            return
        if topic == topics.user_support_desk(self.user_id):
            self._emit(DeskEventReceived(DeskEvent.model_validate_json(payload)))
            return
        if topic == topics.ops_queue():
            self._emit(QueueChanged(QueueSnapshot.model_validate_json(payload)))
            return
        conv = self._conv_event(topic)
        if conv is None:
            self._emit(OtherEvent(topic, parse_object(payload)))
            return
        conv_id, kind = conv
        if kind is UpKind.MSG:
            message = StoredMessage.model_validate_json(payload)
            async with self._emit_lock:
                await self._accept(message)
        elif kind is UpKind.READ:
            read = ReadEvent.model_validate_json(payload)
            self._emit(ReadReceiptEvent(conv_id, read.user_id, read.seq))
        else:
            typing = TypingEvent.model_validate_json(payload)
            self._emit(TypingIndicator(conv_id, typing.user_id, typing.typing))

    def _on_call_event(self, event: CallEvent) -> None:
        # With several service instances, two events of one call can cross on
        # the way; once a call is over here, nothing may revive it.
        if event.call_id in self._ended_calls and event.event in CALL_LIVE:
            return
        if event.event in CALL_OVER:
            self._ended_calls.append(event.call_id)
        self._emit(CallEventReceived(event))

    def _on_support_event(self, event: SupportEvent) -> None:
        # Two router instances (and the API) may publish changes of one ticket
        # close together; the version says which is newer.
        if event.version < self._ticket_versions.get(event.ticket_id, 0):
            return
        self._ticket_versions[event.ticket_id] = event.version
        self._emit(SupportEventReceived(event))

    async def watch_queue(self) -> None:
        """Operators: receive the waiting queue (`QueueChanged`), now and on changes."""
        granted = await self.mqtt.subscribe([(topics.ops_queue(), 1)])
        if any(code >= 0x80 for code in granted):
            raise NotAuthorized("the queue is for operators only")

    async def wait_for_support_event(
        self, ticket_id: str, event: str, timeout: float = 10.0
    ) -> SupportEvent:
        def matches(candidate: Event) -> bool:
            return (
                isinstance(candidate, SupportEventReceived)
                and candidate.event.ticket_id == ticket_id
                and candidate.event.event == event
            )

        found = await self.wait_for_event(matches, timeout)
        assert isinstance(found, SupportEventReceived)
        return found.event

    def _conv_event(self, topic: str) -> tuple[str, UpKind] | None:
        """(conv_id, kind) for `user/{me}/conv/{conv_id}/{kind}`, else None.

        Parsed with `topics.parse_user_down`, then confirmed by rebuilding the
        topic with `topics.user_conv`, so no topic layout is spelled out here.
        """
        down = topics.parse_user_down(topic)
        if down is None or down.user_id != self.user_id or len(down.path) != 3:
            return None
        try:
            kind = UpKind(down.path[2])
        except ValueError:
            return None
        conv_id = down.path[1]
        if topic != topics.user_conv(self.user_id, conv_id, kind):
            return None
        return conv_id, kind

    def _emit(self, event: Event) -> None:
        self._events.put_nowait(event)

    # --- internals: order and gaps (callers hold _emit_lock) --------------------------

    async def _accept(self, message: StoredMessage) -> int:
        """Emit `message` unless already seen, after any missing messages before it."""
        conv_id, seq = message.conv_id, message.seq
        if self._seq.seen(conv_id, seq):
            return 0
        emitted = 0
        floor = self._seq.floor(conv_id)
        if floor is not None and seq > floor + 1 and self.http is not None:
            emitted += await self._fill_gap(conv_id, floor, seq)
        self._seq.add(conv_id, seq)
        self._emit(MessageEvent(message))
        return emitted + 1

    async def _fill_gap(self, conv_id: str, after: int, before: int) -> int:
        """Emit the unseen messages with `after < seq < before`, from history.

        A failed fetch is logged, not raised: the live message still goes out,
        and the holes stay open for a late delivery or the next catch-up.
        """
        http = self._require_http()
        emitted = 0
        cursor = after
        while cursor < before - 1:
            limit = min(HISTORY_PAGE, before - 1 - cursor)
            try:
                page = await http.history(conv_id, after_seq=cursor, limit=limit)
            except (ApiError, httpx.HTTPError, ValidationError) as error:
                log.warning("%s: gap fill of %s failed: %s", self.device_id, conv_id, error)
                return emitted
            if not page or page[-1].seq <= cursor:
                return emitted
            for message in page:
                if message.seq >= before:
                    return emitted
                if not self._seq.seen(conv_id, message.seq):
                    self._seq.add(conv_id, message.seq)
                    self._emit(MessageEvent(message))
                    emitted += 1
            cursor = page[-1].seq
        return emitted

    async def _page_forward(self, conv_id: str) -> int:
        """Emit everything after the highest seq seen, page by page (sync's has_more)."""
        http = self._require_http()
        emitted = 0
        while True:
            cursor = self._seq.last(conv_id) or 0
            page = await http.history(conv_id, after_seq=cursor, limit=HISTORY_PAGE)
            if not page or page[-1].seq <= cursor:
                return emitted
            for message in page:
                emitted += await self._accept(message)

    def _require_http(self) -> ChatHttp:
        if self.http is None:
            raise RuntimeError("this ChatClient has no ChatHttp")
        return self.http

    # --- internals: reconnects --------------------------------------------------------

    async def _watch_reconnects(self, mqtt: AsyncMqtt, seen: int) -> None:
        while True:
            if mqtt.connected.is_set():
                resent = self.outbox.resend_overdue(ACK_TIMEOUT_SECONDS)
                if resent:
                    log.info("%s: re-sent %d sends with no ack", self.device_id, resent)
            if mqtt.connect_count == seen:
                # Normally wakes on the disconnect/connect pair; the timeout is
                # a safety net should both happen while we were busy.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._next_connect(mqtt), RECONNECT_POLL_SECONDS)
                continue
            seen = mqtt.connect_count
            await self._after_reconnect(mqtt)

    async def _catch_up_retrying(self) -> None:
        """Catch up after a reconnect; a busy or unreachable server (thousands of
        devices reconnect at once after a broker restart) is asked again, with
        jittered backoff. A refusal (4xx) is not."""
        delay = CATCH_UP_FIRST_RETRY_SECONDS
        for attempt in range(1, CATCH_UP_ATTEMPTS + 1):
            try:
                await self.catch_up()
                return
            except (ApiError, httpx.HTTPError, ValidationError, KeyError) as error:
                final = attempt == CATCH_UP_ATTEMPTS or (
                    isinstance(error, ApiError) and error.status < 500
                )
                if final:
                    log.warning("%s: catch-up after reconnect failed: %r", self.device_id, error)
                    return
                log.info("%s: catch-up attempt %d failed: %r", self.device_id, attempt, error)
            await asyncio.sleep(random.uniform(delay / 2, delay))
            delay *= 2

    @staticmethod
    async def _next_connect(mqtt: AsyncMqtt) -> None:
        await mqtt.disconnected.wait()
        await mqtt.connected.wait()

    async def _after_reconnect(self, mqtt: AsyncMqtt) -> None:
        log.info("%s: reconnected (#%d)", self.device_id, mqtt.connect_count)
        # The Last Will said offline while we were gone: say online again.
        presence = topics.presence(self.user_id, self.device_id)
        mqtt.publish(presence, ONLINE, qos=1, retain=True).add_done_callback(_retrieve)
        resent = self.outbox.resend_all()
        if resent:
            log.info("%s: re-sent %d unacked messages", self.device_id, resent)
        if self.http is not None:
            await self._catch_up_retrying()
        self._recovered += 1
        signal, self._recovered_signal = self._recovered_signal, asyncio.Event()
        signal.set()


def _retrieve(future: asyncio.Future[None]) -> None:
    """Mark a fire-and-forget publish's outcome as seen (no 'never retrieved' noise)."""
    if not future.cancelled():
        future.exception()
