"""The persistence service's handlers: messages, read receipts and typing.

Per message: parse (a `WireError` becomes a rejected ack), queue for the batch
writer, and when the batch is committed deliver to members, ack the sender, and
only then acknowledge the inbound MQTT message (the runtime does, when the
handler returns). See services/persistence/store.py for the invariants.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from functools import partial

import psycopg
from sqlalchemy import Engine

from bridge import topics
from bridge.mqtt import Inbound
from bridge.service import ServiceRuntime
from bridge.topics import ConvUp, UpKind
from bridge.wire.base import M, WireError, decode
from bridge.wire.messaging import ReadEvent, ReadUp, SendMessage, TypingEvent, TypingUp
from bridge.wire.support import MembersChanged
from core.config import Settings
from core.database import Database
from core.db import reading
from core.ids import is_valid_id
from core.logs import bind_log_ids
from core.pg_line import PgLine
from core.ratelimit import message_limit
from core.timefmt import utcnow
from services.persistence import store, store_pg
from services.persistence.delivery import (
    ack_for,
    count_outcome,
    deliver_after_commit,
    publish_ack,
    to_deliver,
)
from services.persistence.store import Outcome, Rejected, SendItem
from services.persistence.writer import BatchWriter

log = logging.getLogger(__name__)

MEMBER_CACHE_SECONDS = 30.0
MARK_INTERVAL_SECONDS = 0.2


class PersistenceService:
    def __init__(self, runtime: ServiceRuntime, db: Database, settings: Settings) -> None:
        self.runtime = runtime
        self.mqtt = runtime.mqtt
        self.db = db
        self.settings = settings
        self.writer: BatchWriter[SendItem, Outcome] = BatchWriter(
            self._store_batch, batch_max=settings.store_batch_max
        )
        # PostgreSQL: the batch writer's own connection for store_pg's statement.
        self.line = (
            PgLine(settings.effective_database_url)
            if db.engine.dialect.name == "postgresql"
            else None
        )
        # Ids of messages whose copies the broker has all accepted, written in
        # the next batch's transaction, or alone when no batch comes along.
        self._delivered: deque[str] = deque()
        self._members: dict[str, tuple[float, frozenset[str]]] = {}
        self.rate = message_limit(settings.message_rate_per_second, settings.message_rate_burst)
        runtime.route(topics.conv_up_filter(UpKind.MSG), 1, self.on_message)
        runtime.route(topics.conv_up_filter(UpKind.READ), 1, self.on_read)
        runtime.route(topics.conv_up_filter(UpKind.TYPING), 0, self.on_typing)
        # Not shared: every instance keeps its own cache of member lists.
        runtime.route(topics.conv_members_changed(), 1, self.on_members_changed, shared=False)

    def start_background(self) -> None:
        self.runtime.spawn(self.writer.run(), "batch-writer")
        self.runtime.spawn(self._mark_delivered_forever(), "mark-delivered")
        self.runtime.spawn(self._redeliver_forever(), "redeliver")

    async def stop(self) -> None:
        """Unacknowledged work needs nothing: the broker delivers it again."""
        if self.line is not None:
            await self.line.close()

    # --- messages -------------------------------------------------------------------

    async def on_message(self, message: Inbound) -> None:
        up = topics.parse_conv_up(message.topic)
        if up is None:
            return
        bind_log_ids(conv_id=up.conv_id, user_id=up.user_id)
        client_msg_id: str | None = None
        outcome: Outcome | asyncio.Future[Outcome]
        if not is_valid_id(up.conv_id):
            outcome = Rejected("invalid_payload", "conversation id is not a valid id")
        else:
            try:
                body = decode(SendMessage, message.payload)
            except WireError as error:
                client_msg_id = error.client_msg_id
                bind_log_ids(client_msg_id=client_msg_id)
                outcome = Rejected(error.code, error.message)
            else:
                client_msg_id = body.client_msg_id
                bind_log_ids(client_msg_id=client_msg_id)
                over_limit = not self.rate.hit(up.user_id).allowed
                # Queued before the first await: arrival order is kept.
                outcome = self.writer.submit(SendItem(up.conv_id, up.user_id, body, over_limit))
        if isinstance(outcome, asyncio.Future):
            outcome = await outcome
        count_outcome(outcome)
        if isinstance(outcome, Rejected):
            log.info("rejected send on %s: %s (%s)", message.topic, outcome.code, outcome.message)
        pending = to_deliver(outcome)
        if pending is None:
            await publish_ack(self.mqtt, up.user_id, ack_for(up.conv_id, client_msg_id, outcome))
            return
        # Copies first, then the ack (publishes leave in order). The mark is
        # recorded as soon as the broker has every copy; a re-send that beats it
        # to the database is still not delivered twice while the original is
        # young (store.ORPHANED_AFTER).
        delivered = asyncio.gather(*deliver_after_commit(self.mqtt, *pending))
        delivered.add_done_callback(partial(self._record_delivery, pending[0].id))
        ack = publish_ack(self.mqtt, up.user_id, ack_for(up.conv_id, client_msg_id, outcome))
        await asyncio.gather(delivered, ack)

    def _record_delivery(self, message_id: str, done: asyncio.Future[list[None]]) -> None:
        if not done.cancelled() and done.exception() is None:
            self._delivered.append(message_id)

    @contextmanager
    def _taking_delivered(self) -> Iterator[list[str]]:
        """The pending delivery marks, put back if writing them fails."""
        taken = list(self._delivered)
        self._delivered.clear()
        try:
            yield taken
        except BaseException:
            self._delivered.extendleft(reversed(taken))
            raise

    async def _store_batch(self, items: Sequence[SendItem]) -> list[Outcome]:
        """Store a batch, recording pending deliveries in the same transaction."""
        with self._taking_delivered() as delivered:
            if self.line is not None and store.fast_path_applies(items):
                now = utcnow()
                try:
                    ids, stored = await store_pg.store_texts_on(self.line, items, delivered, now)
                except psycopg.IntegrityError:
                    pass  # A re-send: nothing was written; the generic path decides.
                else:
                    outcomes, left_out = store.fast_outcomes(items, ids, stored, now)
                    if left_out:
                        decided = await self.db.run(store.decide_left_out, left_out)
                        return store.merge_decided(outcomes, decided)
                    return [o for o in outcomes if o is not None]
            return await self.db.run(store.store_generic, items, delivered)

    def _flush_delivered(self, engine: Engine) -> None:
        with self._taking_delivered() as delivered:
            store.mark_delivered(engine, delivered)

    async def _mark_delivered_forever(self) -> None:
        """When no batch came along to carry them, write the delivery marks alone."""
        while True:
            await asyncio.sleep(MARK_INTERVAL_SECONDS)
            if self._delivered:
                await self.db.run(self._flush_delivered)

    async def _redeliver_forever(self) -> None:
        """The outbox sweep: deliver what a crashed process committed but never sent."""
        age = timedelta(seconds=self.settings.redelivery_after_seconds)
        while True:
            await asyncio.sleep(self.settings.redelivery_after_seconds / 2)
            pending = await self.db.run(store.undelivered, age)
            if not pending:
                continue
            log.warning("re-delivering %d committed but undelivered messages", len(pending))
            futures = [
                f for s in pending for f in deliver_after_commit(self.mqtt, s.message, s.member_ids)
            ]
            await asyncio.gather(*futures)
            await self.db.run(store.mark_delivered, [s.message.id for s in pending])

    # --- read receipts and typing ------------------------------------------------------

    @staticmethod
    def _parse_no_ack(message: Inbound, model: type[M]) -> tuple[ConvUp, M] | None:
        """Read receipts and typing have no ack: what cannot be parsed is logged."""
        up = topics.parse_conv_up(message.topic)
        if up is None or not is_valid_id(up.conv_id):
            return None
        try:
            return up, decode(model, message.payload)
        except WireError as error:
            log.info("ignored %s: %s", message.topic, error.message)
            return None

    async def on_read(self, message: Inbound) -> None:
        parsed = self._parse_no_ack(message, ReadUp)
        if parsed is None:
            return
        up, body = parsed
        moved = await self.db.run(store.apply_read, up.conv_id, up.user_id, body.seq)
        if moved is None:
            return
        payload = ReadEvent(user_id=up.user_id, seq=moved.seq).model_dump_json().encode()
        await asyncio.gather(
            *(
                self.mqtt.publish(topics.user_conv(member, up.conv_id, UpKind.READ), payload)
                for member in moved.member_ids
            )
        )

    async def on_typing(self, message: Inbound) -> None:
        parsed = self._parse_no_ack(message, TypingUp)
        if parsed is None:
            return
        up, body = parsed
        members = await self._members_of(up.conv_id)
        if up.user_id not in members:
            log.info("typing from non-member %s in %s ignored", up.user_id, up.conv_id)
            return
        payload = TypingEvent(user_id=up.user_id, typing=body.typing).model_dump_json().encode()
        for member in members - {up.user_id}:
            self.mqtt.publish(topics.user_conv(member, up.conv_id, UpKind.TYPING), payload, qos=0)

    async def on_members_changed(self, message: Inbound) -> None:
        try:
            changed = decode(MembersChanged, message.payload)
        except WireError:
            return
        self._members.pop(changed.conv_id, None)

    async def _members_of(self, conv_id: str) -> frozenset[str]:
        cached = self._members.get(conv_id)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        found = await self.db.run(_members, conv_id)
        self._members[conv_id] = (now + MEMBER_CACHE_SECONDS, found)
        return found


def _members(engine: Engine, conv_id: str) -> frozenset[str]:
    with reading(engine) as conn:
        return frozenset(store.members_of(conn, [conv_id]).get(conv_id, []))
