"""The presence tracker: device announcements in, peer events out.

Devices publish `presence/{uid}/{device_id}` (retained; their Last Will says
offline). The tracker records each device's state (services/presence/store.py)
and, when a user's own state changes, tells everyone who shares a conversation
with them on `user/{peer}/presence`:
- coming online is told at once;
- going offline is told only if the user stays offline for the debounce
  (`PRESENCE_OFFLINE_DEBOUNCE_SECONDS`), so a phone changing networks or
  flapping between them tells its peers nothing.

Restarts: the subscription is not shared, because a shared subscription gets no
retained messages. On every (re)subscribe the broker replays each device's
retained state; what the database already knows changes nothing, and what
changed while the tracker was away is applied and told. One instance runs (it
does a few queries per connection change; nothing is polled).
"""

from __future__ import annotations

import asyncio
import logging

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
from services.presence.store import UserPresence

log = logging.getLogger(__name__)


class PresenceTracker:
    def __init__(self, runtime: ServiceRuntime, db: Database, settings: Settings) -> None:
        self.runtime = runtime
        self.mqtt = runtime.mqtt
        self.db = db
        self.debounce = settings.presence_offline_debounce_seconds
        # What peers were last told about each user (unknown after a restart).
        self._told: dict[str, bool] = {}
        self._going_offline: dict[str, asyncio.TimerHandle] = {}
        runtime.route(topics.presence_filter(), 1, self.on_presence, shared=False)

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
        change = await self.db.run(
            store.apply_device, up.user_id, up.device_id, body.online, utcnow()
        )
        if change is None:
            return
        if change.online:
            self._cancel_going_offline(up.user_id)
            if self._told.get(up.user_id) is not True:
                await self._tell_peers(change)
        elif up.user_id not in self._going_offline:
            loop = asyncio.get_running_loop()
            self._going_offline[up.user_id] = loop.call_later(
                self.debounce, self._offline_settled, up.user_id
            )
        # Raw, not debounced: the support router applies its own grace. After
        # the peers were told: nothing may come between recording a change and
        # reading who to tell (a conversation created meanwhile would be missed
        # or told twice).
        await self.mqtt.publish(
            topics.presence_changed(change.user_id),
            PresenceChange(user_id=change.user_id, online=change.online).model_dump_json().encode(),
        )

    def _cancel_going_offline(self, user_id: str) -> None:
        handle = self._going_offline.pop(user_id, None)
        if handle is not None:
            handle.cancel()

    def _offline_settled(self, user_id: str) -> None:
        self._going_offline.pop(user_id, None)
        self.runtime.spawn(self._tell_if_still_offline(user_id), f"offline:{user_id}")

    async def _tell_if_still_offline(self, user_id: str) -> None:
        presence = await self.db.run(store.presence_of, user_id)
        if not presence.online and self._told.get(user_id) is not False:
            await self._tell_peers(presence)

    async def _tell_peers(self, presence: UserPresence) -> None:
        self._told[presence.user_id] = presence.online
        peers = await self.db.run(store.peers_of, presence.user_id)
        event = PresenceEvent(
            user_id=presence.user_id,
            online=presence.online,
            last_seen=to_wire(presence.last_seen) if presence.last_seen else None,
        )
        payload = event.model_dump_json().encode()
        await asyncio.gather(*(self.mqtt.publish(topics.user_presence(p), payload) for p in peers))
