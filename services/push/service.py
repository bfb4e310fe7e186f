"""The push service: notifications through Expo for users with no device online.

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

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from exponent_server_sdk import PushMessage

from bridge import topics
from bridge.mqtt import Inbound
from bridge.service import ServiceRuntime
from bridge.wire.base import WireError, decode
from bridge.wire.calls import PushCallNotice
from core.config import Settings
from core.database import Database
from services.push import store
from services.push.expo import ExpoSender, SendReport

log = logging.getLogger(__name__)

CALL_CHANNEL = "calls"  # the Android notification channel the app sets up for ringing
CALL_BODY = {
    ("incoming", "audio"): "Incoming voice call",
    ("incoming", "video"): "Incoming video call",
    ("cancelled", "audio"): "Missed voice call",
    ("cancelled", "video"): "Missed video call",
    ("missed", "audio"): "Missed voice call",
    ("missed", "video"): "Missed video call",
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
        runtime.route(topics.push_call_filter(), 1, self.on_call_notice)

    def start_background(self) -> None:
        self.scheduler.start()
        self.scheduler.add_job(
            self._check_receipts,
            "interval",
            seconds=self.settings.push_receipt_check_seconds,
            id="receipts",
            max_instances=1,
            coalesce=True,
        )

    def stop_background(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    async def on_call_notice(self, message: Inbound) -> None:
        try:
            notice = decode(PushCallNotice, message.payload)
        except WireError as error:
            log.warning("ignored %s: %s", message.topic, error.message)
            return
        tokens = await self.db.run(store.offline_tokens, notice.to)
        if not tokens:
            return
        ringing = notice.event == "incoming"
        data = {
            "type": "call",
            "event": notice.event,
            "call_id": notice.call_id,
            "from": notice.from_,
            "media": notice.media,
        }
        messages = [
            PushMessage(
                to=token,
                title=notice.from_name,
                body=CALL_BODY[(notice.event, notice.media)],
                data=data,
                priority="high",
                sound="default" if ringing else None,
                channel_id=CALL_CHANNEL,
                # A ring is worth nothing once the call stopped ringing.
                ttl=int(self.settings.call_ring_timeout_seconds) if ringing else None,
            )
            for token in tokens
        ]
        await self._record(await self.sender.send(messages))

    async def _record(self, report: SendReport) -> None:
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
