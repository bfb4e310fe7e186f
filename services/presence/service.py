"""The presence tracker: device announcements in, peer events out.

Devices publish `presence/{uid}/{device_id}` (retained; their Last Will says
offline). The tracker records each device's state (services/presence/store.py)
and, when a user's own state changes, tells everyone who shares a conversation
with them on `user/{peer}/presence`:
- coming online is told at once;
- going offline is told only if the user stays offline for the debounce
  (`PRESENCE_OFFLINE_DEBOUNCE_SECONDS`), so a phone changing networks or
  flapping between them tells its peers nothing.
The support router gets every recorded change, not debounced, on
`svc/presence/changed/{uid}`.

Several instances (docs/architecture.md, "Presence"): the subscription is not
shared, because a shared subscription gets no retained messages and each
instance relies on the broker's replay of every device's retained state on
(re)subscribe to catch up with what changed while it was away. So every
instance sees every announcement, and the database decides who acts:
- the device's state is written by a compare-and-set; the one instance whose
  write changed it has *made* the change, and only it publishes
  `svc/presence/changed/{uid}` (one event per change);
- what the peers were last told is a row per user, also changed by a
  compare-and-set (`claim_announcement`); only the instance whose write changed
  it tells the peers (one event per transition). The claim re-reads the user's
  presence in its transaction, so a stale claim tells nothing;
- each instance that sees a user go (or stay) offline while the peers were told
  online starts its own debounce timer; when the timers fire, the claim lets
  one of them tell. So a killed instance's pending offline is still told by
  the others, and a restarted one tells what changed while no tracker ran.
An instance's timers are only a hint; the rows are the truth.

Delivery: the subscription is QoS 0. Presence is state, not a log: the broker's
retained replay on every (re)subscribe is the catch-up, and a QoS 1 session
would also hand a restarted instance the stale transitions queued or in flight
before its death, after that replay (a device long offline would be set online
again). Within an instance the announcements of one user are applied in
arrival order (one at a time per user), so a quick offline-online cannot be
recorded the wrong way round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator

from bridge import topics
from bridge.mqtt import Inbound
from bridge.service import ServiceRuntime
from bridge.wire.base import WireError, decode
from bridge.wire.presence import PresenceEvent, PresenceUp
from bridge.wire.support import PresenceChange
from core.config import Settings
from core.database import Database
from core.ids import is_valid_id
from core.timefmt import to_wire, utcnow
from services.presence import store

log = logging.getLogger(__name__)


class PresenceTracker:
    def __init__(self, runtime: ServiceRuntime, db: Database, settings: Settings) -> None:
        self.runtime = runtime
        self.mqtt = runtime.mqtt
        self.db = db
        self.debounce = settings.presence_offline_debounce_seconds
        # Users this instance will check for a settled offline (its debounce).
        self._going_offline: dict[str, asyncio.TimerHandle] = {}
        # One announcement at a time per user, in arrival order (asyncio.Lock
        # is first come, first served, and handlers reach it before any await).
        self._in_order: dict[str, asyncio.Lock] = {}
        self._queued: Counter[str] = Counter()
        runtime.route(topics.presence_filter(), 0, self.on_presence, shared=False)

    def start_background(self) -> None:
        """Nothing runs in the background: the tracker only reacts."""

    async def stop(self) -> None:
        for handle in self._going_offline.values():
            handle.cancel()

    async def on_presence(self, message: Inbound) -> None:
        up = topics.parse_presence(message.topic)
        if up is None or not (is_valid_id(up.user_id) and is_valid_id(up.device_id)):
            return
        if not message.payload:
            return  # a cleared retained message: the device was removed
        try:
            body = decode(PresenceUp, message.payload)
        except WireError as error:
            log.info("ignored %s: %s", message.topic, error.message)
            return
        async with self._turn_of(up.user_id):
            await self._record(up.user_id, up.device_id, body.online)

    @contextlib.asynccontextmanager
    async def _turn_of(self, user_id: str) -> AsyncIterator[None]:
        lock = self._in_order.setdefault(user_id, asyncio.Lock())
        self._queued[user_id] += 1
        try:
            async with lock:
                yield
        finally:
            self._queued[user_id] -= 1
            if not self._queued[user_id]:
                del self._queued[user_id], self._in_order[user_id]

    async def _record(self, user_id: str, device_id: str, online: bool) -> None:
        recorded = await self.db.run(store.apply_device, user_id, device_id, online, utcnow())
        if recorded is None:
            return
        presence = recorded.presence
        if presence.online:
            self._cancel_going_offline(presence.user_id)
            if recorded.announced is not True:
                await self._announce(presence.user_id, online=True)
        elif recorded.announced is True or (recorded.made and recorded.announced is None):
            self._settle_offline(presence.user_id)
        if not recorded.made:
            return  # another instance made this change and reports it
        # Raw, not debounced: the support router applies its own grace. After
        # the peers were told: nothing may come between recording a change and
        # reading who to tell (a conversation created meanwhile would be missed
        # or told twice).
        await self.mqtt.publish(
            topics.presence_changed(presence.user_id),
            PresenceChange(user_id=presence.user_id, online=presence.online)
            .model_dump_json()
            .encode(),
        )

    def _settle_offline(self, user_id: str) -> None:
        """Check again after the debounce (unless a check is pending already)."""
        if user_id not in self._going_offline:
            loop = asyncio.get_running_loop()
            self._going_offline[user_id] = loop.call_later(
                self.debounce, self._offline_settled, user_id
            )

    def _cancel_going_offline(self, user_id: str) -> None:
        handle = self._going_offline.pop(user_id, None)
        if handle is not None:
            handle.cancel()

    def _offline_settled(self, user_id: str) -> None:
        self._going_offline.pop(user_id, None)
        self.runtime.spawn(self._tell_if_still_offline(user_id), f"offline:{user_id}")

    async def _tell_if_still_offline(self, user_id: str) -> None:
        await self._announce(user_id, online=False)

    async def _announce(self, user_id: str, *, online: bool) -> None:
        """Tell the peers, if this instance is the one that records telling them."""
        presence = await self.db.run(store.claim_announcement, user_id, online, utcnow())
        if presence is None:
            return
        peers = await self.db.run(store.peers_of, presence.user_id)
        event = PresenceEvent(
            user_id=presence.user_id,
            online=presence.online,
            last_seen=to_wire(presence.last_seen) if presence.last_seen else None,
        )
        payload = event.model_dump_json().encode()
        await asyncio.gather(*(self.mqtt.publish(topics.user_presence(p), payload) for p in peers))
