"""The push service: notifications through Expo for users with no device online.

Messages (from persistence on `push/message`, once per stored message): each
recipient who has no device online and has not muted the conversation gets a
push; messages of one conversation within `PUSH_MESSAGE_WINDOW_SECONDS` make one
push that says how many. Who is online is checked again when the window closes
(a user who came back meanwhile gets nothing), and at most
`PUSH_USER_PER_MINUTE` message pushes go to one user a minute.

Several instances share `push/message` (docs/architecture.md, "Push"): the
windows and the per-user limit are kept in the database, not in a process
(services/push/collapse.py, windows.py, quota.py), so a window collects the
messages every instance received, is pushed once, and a window whose opener
was killed is pushed by another instance. With a window of 0 each message is
its own push and goes out at once, with no window written. Call and support
pushes need nothing shared: each notice is one push.

Support (the support router's events on `push/support/{uid}`): `assigned`,
`transferred` and `closed` go to a user who is away, so "Ana will answer you
now" reaches them like the old app's banner did.

Calls (from callsig's notices on `push/call/{callee}`): `incoming` goes out at
once with high priority and a time to live of the ring timeout, so a phone that
comes back later does not ring for a call long over; `cancelled` and `missed`
go out so the app stops ringing and shows the missed call.

A user online on any device gets no push: the app has the event already.
Tokens Expo reports as not registered (in a ticket, or in a receipt checked
later by an APScheduler job) are dropped.
"""

from __future__ import annotations

import logging
from datetime import UTC
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from exponent_server_sdk import PushMessage

from bridge import topics
from bridge.mqtt import Inbound
from bridge.service import ServiceRuntime
from bridge.wire.base import WireError, decode
from bridge.wire.calls import PushCallNotice
from bridge.wire.messaging import PushCandidate, StoredMessage
from bridge.wire.support import SupportEvent
from core import metrics
from core.config import Settings
from core.database import Database
from core.timefmt import utcnow
from services.push import quota, store
from services.push.collapse import Collapser
from services.push.expo import ExpoSender, SendReport
from services.push.windows import Due

log = logging.getLogger(__name__)

PREVIEW_CHARS = 150  # well under Expo's 4 KiB payload, whatever the text
MEDIA_LABEL = {"image": "Photo", "audio": "Voice note", "file": "File"}
CALL_CHANNEL = "calls"  # the Android notification channel the app sets up for ringing
CALL_BODY = {
    ("incoming", "audio"): "Incoming voice call",
    ("incoming", "video"): "Incoming video call",
    ("cancelled", "audio"): "Missed voice call",
    ("cancelled", "video"): "Missed video call",
    ("missed", "audio"): "Missed voice call",
    ("missed", "video"): "Missed video call",
}


SUPPORT_CHANNEL = "support"
# The old app's words: "Operator assigned: NAME will answer you now".
SUPPORT_BODY = {
    "assigned": "{agent} will answer you now",
    "transferred": "{agent} is taking over your request",
    "closed": "Your support chat was closed. How did we do?",
}
SUPPORT_BODY_NO_AGENT = {
    "assigned": "An operator will answer you now",
    "transferred": "Your request is back in the queue; the next operator will answer",
    "closed": "Your support chat was closed. How did we do?",
}


class PushService:
    def __init__(
        self, runtime: ServiceRuntime, db: Database, settings: Settings, sender: ExpoSender
    ) -> None:
        self.runtime = runtime
        self.db = db
        self.settings = settings
        self.sender = sender
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        # Accepted tickets whose receipts are still to be checked: (id, token).
        self._unchecked: list[tuple[str, str]] = []
        self._window = settings.push_message_window_seconds
        self._collapser = Collapser(db, self._window, self._push_due)
        runtime.route(topics.push_call_filter(), 1, self.on_call_notice)
        runtime.route(topics.push_message(), 1, self.on_message)
        runtime.route(topics.push_support_filter(), 1, self.on_support_event)

    def start_background(self) -> None:
        if self._window > 0:
            self.runtime.spawn(self._collapser.run(), "message-pushes")
        self.scheduler.start()
        self.scheduler.add_job(
            self._check_receipts,
            "interval",
            seconds=self.settings.push_receipt_check_seconds,
            id="receipts",
            max_instances=1,
            coalesce=True,
        )

    async def stop(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    async def on_support_event(self, message: Inbound) -> None:
        """A support ticket changed hands or closed: tell its user if they are away."""
        user_id = topics.parse_push_support(message.topic)
        if user_id is None:
            return
        try:
            event = decode(SupportEvent, message.payload)
        except WireError as error:
            log.warning("ignored %s: %s", message.topic, error.message)
            return
        body = SUPPORT_BODY.get(event.event)
        if body is None:
            return
        agent = event.agent.name if event.agent else None
        await self._push_to_offline_devices(
            user_id,
            "support",
            title="Support",
            body=body.format(agent=agent) if agent else SUPPORT_BODY_NO_AGENT[event.event],
            data={
                "type": "support",
                "event": event.event,
                "ticket_id": event.ticket_id,
                "conv_id": event.conv_id,
            },
            priority="high",
            channel_id=SUPPORT_CHANNEL,
        )

    async def on_call_notice(self, message: Inbound) -> None:
        try:
            notice = decode(PushCallNotice, message.payload)
        except WireError as error:
            log.warning("ignored %s: %s", message.topic, error.message)
            return
        ringing = notice.event == "incoming"
        await self._push_to_offline_devices(
            notice.to,
            "call",
            title=notice.from_name,
            body=CALL_BODY[(notice.event, notice.media)],
            data={
                "type": "call",
                "event": notice.event,
                "call_id": notice.call_id,
                "from": notice.from_,
                "media": notice.media,
            },
            priority="high",
            sound="default" if ringing else None,
            channel_id=CALL_CHANNEL,
            # A ring is worth nothing once the call stopped ringing.
            ttl=int(self.settings.call_ring_timeout_seconds) if ringing else None,
        )

    async def _push_to_offline_devices(self, user_id: str, kind: str, **fields: Any) -> None:
        """One push per device of `user_id` with no connection (none if all are online)."""
        tokens = await self.db.run(store.offline_tokens, user_id)
        if tokens:
            messages = [PushMessage(to=token, **fields) for token in tokens]
            await self._record(await self.sender.send(messages), kind)

    # --- messages ------------------------------------------------------------------------

    async def on_message(self, message: Inbound) -> None:
        try:
            candidate = decode(PushCandidate, message.payload)
        except WireError as error:
            log.warning("ignored %s: %s", message.topic, error.message)
            return
        stored = candidate.message
        offline = await self.db.run(store.offline_recipients, stored.conv_id, candidate.recipients)
        if not offline:
            return
        if self._window > 0:
            await self._collapser.add(stored, list(offline))
        else:
            await self._push_now(stored, offline)

    async def _push_now(self, stored: StoredMessage, offline: dict[str, list[str]]) -> None:
        """No window: this message is one push to each offline member (just read)."""
        allowed = await self._within_rate(offline)
        if not allowed:
            return
        names = await self.db.run(store.display_names, {stored.sender_id})
        messages = [
            _message_push(token, Due(user_id, 1, stored), names)
            for user_id in allowed
            for token in offline[user_id]
        ]
        await self._record(await self.sender.send(messages), "message")

    async def _push_due(self, batch: list[Due]) -> None:
        """Windows that closed: one push each, if still wanted (the member may
        have come online or muted meanwhile), sent together."""
        try:
            messages = await self._messages_for(batch)
            if messages:
                await self._record(await self.sender.send(messages), "message")
        except Exception:
            log.exception("%d message pushes failed", len(batch))

    async def _messages_for(self, batch: list[Due]) -> list[PushMessage]:
        by_conv: dict[str, list[Due]] = {}
        for due in batch:
            by_conv.setdefault(due.last.conv_id, []).append(due)
        names = await self.db.run(store.display_names, {due.last.sender_id for due in batch})
        messages = []
        for conv_id, dues in by_conv.items():
            offline = await self.db.run(
                store.offline_recipients, conv_id, [due.user_id for due in dues]
            )
            allowed = await self._within_rate(offline)
            messages += [
                _message_push(token, due, names)
                for due in dues
                if due.user_id in allowed
                for token in offline[due.user_id]
            ]
        return messages

    async def _within_rate(self, offline: dict[str, list[str]]) -> set[str]:
        """The users (with tokens) still under the per-user limit, counted for all
        instances together; taking from the quota counts this push."""
        wanted = [user_id for user_id, tokens in offline.items() if tokens]
        if not wanted:
            return set()
        limit = self.settings.push_user_per_minute
        allowed = await self.db.run(quota.take, wanted, limit, utcnow())
        for user_id in set(wanted) - allowed:
            log.info("push to %s held back: over %d a minute", user_id, limit)
        return allowed

    async def _record(self, report: SendReport, kind: str) -> None:
        metrics.PUSHES.labels(kind, "accepted").inc(len(report.accepted))
        metrics.PUSHES.labels(kind, "failed").inc(report.failed)
        metrics.PUSHES.labels(kind, "token_dead").inc(len(report.dead_tokens))
        self._unchecked.extend(report.accepted)
        if report.dead_tokens:
            log.info("dropping %d push tokens Expo does not know", len(report.dead_tokens))
            await self.db.run(store.drop_tokens, report.dead_tokens)

    async def _check_receipts(self) -> None:
        tickets, self._unchecked = self._unchecked, []
        dead = await self.sender.receipts(tickets)
        if dead:
            log.info("dropping %d push tokens found dead in receipts", len(dead))
            await self.db.run(store.drop_tokens, dead)


def _message_push(token: str, due: Due, names: dict[str, str]) -> PushMessage:
    """The push for a closed window: the message itself, or how many there were."""
    last = due.last
    return PushMessage(
        to=token,
        title=names.get(last.sender_id, "Someone"),
        body=preview(last) if due.count == 1 else f"{due.count} new messages",
        data={"type": "message", "conv_id": last.conv_id, "seq": last.seq, "count": due.count},
        sound="default",
    )


def preview(message: StoredMessage) -> str:
    """The body of a one-message push: the text, or a label for media."""
    text = (message.text or "").strip()
    if message.kind != "text":
        label = MEDIA_LABEL[message.kind]
        if message.kind == "file" and message.media is not None:
            label = f"{label}: {message.media.name}"
        text = f"{label} · {text}" if text else label
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"
