"""The sender's outbox: every send is kept until its ack arrives.

Why it exists:
- An MQTT send is only *done* when the persistence service acks it on
  `user/{uid}/ack`. A connection lost in between loses nothing here: after a
  reconnect `resend_all()` publishes the unacked sends again with the *same*
  `client_msg_id`, and the server answers `duplicate` for any it had stored.
- A send whose ack does not come (the message was lost on the way, e.g. while
  a restarted broker had no subscriber yet for it) is published again after
  `resend_overdue`'s timeout, with the same `client_msg_id`.
- `seq` follows the order in which the server commits sends. With several
  persistence instances sharing the load (a shared subscription), two sends that
  are on the wire together may be committed in either order. Keeping at most
  `max_in_flight` (default 1) unacked sends per conversation on the wire makes
  `seq` follow the order of `send()` calls; other conversations are independent.

Pure logic: publishing goes through a callback, so this is testable without a
broker. It needs a running event loop only to create futures.

Sends are keyed by `(conv_id, client_msg_id)`, because the server de-duplicates
per conversation: the same `client_msg_id` may legitimately be used in two
conversations.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from bridge.mqtt import PublishRefused
from bridge.wire.messaging import Ack, SendMessage

log = logging.getLogger(__name__)

# publish(conv_id, payload) -> a future completing on the broker's PUBACK, or None.
PublishFn = Callable[[str, bytes], "asyncio.Future[None] | None"]


def new_client_msg_id() -> str:
    """96 random bits, url-safe: matches the contract's id pattern by construction."""
    return secrets.token_urlsafe(12)


class OutboxClosed(Exception):
    """The outbox was closed before the send was acked."""


@dataclass(eq=False, slots=True)
class PendingSend:
    conv_id: str
    client_msg_id: str
    # Serialized once so a re-send is byte-for-byte the original.
    payload: bytes
    future: asyncio.Future[Ack]
    publish_count: int = 0
    # The last publish attempt raised (not connected): nothing reached the wire.
    publish_failed: bool = False
    # time.monotonic() of the last publish attempt.
    published_at: float = 0.0


class Outbox:
    def __init__(self, publish: PublishFn, *, max_in_flight: int = 1) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self._publish = publish
        self.max_in_flight = max_in_flight
        self._by_key: dict[tuple[str, str], PendingSend] = {}
        # Insertion order of these dicts keeps re-sends in first-send order.
        self._in_flight: dict[str, list[PendingSend]] = {}
        self._waiting: dict[str, deque[PendingSend]] = {}
        self._closed = False

    # --- queries ----------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        """Unacked sends, on the wire or waiting."""
        return len(self._by_key)

    def in_flight(self, conv_id: str | None = None) -> list[PendingSend]:
        """Sends published and not yet acked (of one conversation, or all)."""
        if conv_id is not None:
            return list(self._in_flight.get(conv_id, ()))
        return [p for sends in self._in_flight.values() for p in sends]

    def waiting(self, conv_id: str | None = None) -> list[PendingSend]:
        """Sends held back by the in-flight limit, in send order."""
        if conv_id is not None:
            return list(self._waiting.get(conv_id, ()))
        return [p for sends in self._waiting.values() for p in sends]

    # --- operations -------------------------------------------------------------------

    def send(self, conv_id: str, body: SendMessage) -> asyncio.Future[Ack]:
        """Queue a send; the future resolves to its `Ack` (rejected acks included).

        A send whose `(conv_id, client_msg_id)` is still pending is not queued
        twice: its existing future is returned (the server would keep the first
        body anyway). Cancelling the returned future withdraws the send if it is
        not on the wire yet; once published it is still tracked until its ack so
        the order of the conversation holds.
        """
        if self._closed:
            raise OutboxClosed("outbox is closed")
        key = (conv_id, body.client_msg_id)
        existing = self._by_key.get(key)
        if existing is not None:
            return existing.future
        future: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
        # exclude_none: the smallest payload, and nothing a strict server could trip on.
        payload = body.model_dump_json(exclude_none=True).encode()
        pending = PendingSend(conv_id, body.client_msg_id, payload, future)
        self._by_key[key] = pending
        self._waiting.setdefault(conv_id, deque()).append(pending)
        self._pump(conv_id)
        return future

    def on_ack(self, ack: Ack) -> bool:
        """Settle the send this ack is for. Returns False for an ack that is not ours.

        Unknown acks are normal: acks go to every device of the sender, a late
        second ack follows a re-send, and a payload the server could not parse is
        acked with `client_msg_id` null (never ours: we only publish valid models).
        """
        if ack.client_msg_id is None:
            return False
        pending = self._by_key.get((ack.conv_id, ack.client_msg_id))
        if pending is None or pending.publish_count == 0:
            # Never published by us (waiting sends have not been on the wire).
            return False
        del self._by_key[(ack.conv_id, ack.client_msg_id)]
        flying = self._in_flight[ack.conv_id]
        flying.remove(pending)
        if not flying:
            del self._in_flight[ack.conv_id]
        if not pending.future.done():
            pending.future.set_result(ack)
        self._pump(ack.conv_id)
        return True

    def resend_all(self, *, only_failed: bool = False) -> int:
        """Publish every in-flight send again (after a reconnect); returns how many.

        Waiting sends are not touched: they were never published and go out as
        their turn comes. `only_failed` limits it to sends whose publish call
        raised (queued before the first connect), so nothing goes out twice.
        """
        count = 0
        for pending in self.in_flight():
            if only_failed and not pending.publish_failed:
                continue
            self._publish_one(pending)
            count += 1
        return count

    def resend_overdue(self, older_than: float, now: float | None = None) -> int:
        """Publish again every in-flight send not acked `older_than` seconds after
        its last publish; returns how many. Safe: the server de-duplicates."""
        now = time.monotonic() if now is None else now
        overdue = [p for p in self.in_flight() if now - p.published_at >= older_than]
        for pending in overdue:
            self._publish_one(pending)
        return len(overdue)

    def close(self, reason: str = "outbox closed") -> None:
        """Fail every unsettled send with `OutboxClosed` (nothing will ack them now)."""
        self._closed = True
        for pending in self._by_key.values():
            if not pending.future.done():
                pending.future.set_exception(OutboxClosed(reason))
        self._by_key.clear()
        self._in_flight.clear()
        self._waiting.clear()

    # --- internals --------------------------------------------------------------------

    def _pump(self, conv_id: str) -> None:
        """Move waiting sends of one conversation onto the wire while slots are free."""
        queue = self._waiting.get(conv_id)
        if not queue:
            return
        flying = self._in_flight.setdefault(conv_id, [])
        while queue and len(flying) < self.max_in_flight:
            pending = queue.popleft()
            if pending.future.cancelled():
                # Withdrawn before it was ever published: drop it quietly.
                del self._by_key[(pending.conv_id, pending.client_msg_id)]
                continue
            flying.append(pending)
            self._publish_one(pending)
        if not queue:
            del self._waiting[conv_id]
        if not flying:
            del self._in_flight[conv_id]

    def _publish_one(self, pending: PendingSend) -> None:
        pending.publish_count += 1
        pending.published_at = time.monotonic()
        try:
            puback = self._publish(pending.conv_id, pending.payload)
        except Exception as error:
            # Not connected or similar: it stays in flight and `resend_all` retries.
            pending.publish_failed = True
            log.warning("publish of %s failed (%s); kept for re-send", pending.client_msg_id, error)
            return
        pending.publish_failed = False
        if puback is not None:
            puback.add_done_callback(lambda f: self._on_puback(pending, f))

    def _on_puback(self, pending: PendingSend, puback: asyncio.Future[None]) -> None:
        if puback.cancelled():
            return
        error = puback.exception()  # also marks it retrieved: no "never retrieved" noise
        if not isinstance(error, PublishRefused):
            # Success, or a lost connection: the ack (or a re-send) settles it.
            return
        # The broker refused the publish itself (ACL): no ack will ever come.
        key = (pending.conv_id, pending.client_msg_id)
        if self._by_key.get(key) is not pending:
            return
        del self._by_key[key]
        flying = self._in_flight.get(pending.conv_id, [])
        if pending in flying:
            flying.remove(pending)
            if not flying:
                del self._in_flight[pending.conv_id]
        if not pending.future.done():
            pending.future.set_exception(error)
        self._pump(pending.conv_id)
