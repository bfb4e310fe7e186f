"""Publishing what a committed support change decided (store.Outcome).

Used by the router and by the API alike. Order of work: the users' events
first (they need no read: the transaction handed back what they carry), then
the operators' desk events, then the live views (`ops/queue`, `ops/floor`) and
the position updates of everyone still waiting whose place moved.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Literal, Protocol, TypeVar

from bridge import topics
from bridge.mqtt import AsyncMqtt
from bridge.wire.support import (
    DeskEvent,
    FloorSnapshot,
    MembersChanged,
    Priority,
    QueueSnapshot,
    SupportEvent,
    SupportEventName,
    SupportReason,
    TicketView,
    Wake,
)
from core import metrics
from core.logs import log_context
from core.timefmt import to_wire, utcnow
from services.support_router import store
from services.support_router import views as support_views
from services.support_router.outcome import Brief, Outcome, Rules
from services.support_router.queue import estimated_wait_seconds, serving_capacity

T = TypeVar("T")
log = logging.getLogger(__name__)

# Changes within this long share one rebuild of the queue (and its position
# updates); the floor's figures, costlier and only for supervisors, are rebuilt
# at most once a second.
QUEUE_COALESCE_SECONDS = 0.05
FLOOR_COALESCE_SECONDS = 1.0

# Events whose user may be away from the app: the push service tells them.
PUSHED_EVENTS = ("assigned", "transferred", "closed")


class Runner(Protocol):
    """Runs `func(engine, *args)` off the caller's way (core.database.Database)."""

    async def run(self, func: Callable[..., T], *args: Any) -> T: ...


class Notifier:
    """`views_elsewhere`: this process does not build the live views; when they
    change it calls this instead (the API wakes the router, which does). The
    router instances build them, each learning from the retained queue what
    the others told (`observe_queue`), so a waiting user hears each position
    once, not once per instance."""

    def __init__(
        self,
        mqtt: AsyncMqtt,
        db: Runner,
        rules: Rules,
        *,
        views_elsewhere: Callable[[], None] | None = None,
    ) -> None:
        self.mqtt = mqtt
        self.db = db
        self.rules = rules
        self.views_elsewhere = views_elsewhere
        # What each waiting ticket's user was last told: (version, position).
        self._told: dict[str, tuple[int, int | None]] = {}
        self._last_queue: list[tuple[str, int, Priority]] | None = None
        self._queue_task: asyncio.Task[None] | None = None
        self._floor_task: asyncio.Task[None] | None = None

    async def publish(self, outcome: Outcome) -> None:
        """Everything: the users' events, then the rest (see `publish_rest`)."""
        await self.tell_users(outcome)
        await self.publish_rest(outcome)

    async def tell_users(self, outcome: Outcome) -> None:
        """The tickets' users' events, at once (a new ticket's `assigned` needs
        no read at all; `queued` reads the positions)."""
        sent: list[asyncio.Future[Any]] = []
        positions: dict[str, int] = {}
        estimate: Callable[[int], int | None] = lambda _position: None  # noqa: E731
        if any(n.user_event in ("queued", "transferred") for n in outcome.notices):
            positions, estimate = await self._waiting(utcnow())
        for notice in outcome.notices:
            if notice.user_event is not None:
                metrics.SUPPORT_EVENTS.labels(notice.user_event).inc()
                with log_context(ticket_id=notice.ticket_id):
                    log.info("told the user %s (%s)", notice.user_event, notice.reason or "-")
                position = positions.get(notice.ticket_id)
                sent.append(
                    self._tell_user(
                        notice.ticket,
                        notice.user_event,
                        notice.reason,
                        position,
                        estimate(position) if position else None,
                    )
                )
        self.mqtt.flush()
        await asyncio.gather(*sent)

    async def publish_rest(self, outcome: Outcome) -> None:
        """The operators' desk events and member-list changes now; the live
        views (`ops/queue` with position updates, `ops/floor`) a moment later,
        once for every change in that moment (under load they would otherwise
        be rebuilt for every single ticket)."""
        now = utcnow()
        sent: list[asyncio.Future[Any]] = []
        desk = [(n, operator, event) for n in outcome.notices for operator, event in n.desk]
        if desk:
            views = await self.db.run(
                support_views.views_by_id, [n.ticket_id for n, _, _ in desk], self.rules, now
            )
            for notice, operator_id, event in desk:
                view = views.get(notice.ticket_id)
                if view is not None:
                    desk_event = DeskEvent(event=event, ticket=view, reason=notice.reason)
                    sent.append(
                        self.mqtt.publish(
                            topics.user_support_desk(operator_id),
                            desk_event.model_dump_json().encode(),
                        )
                    )
        for conv_id in outcome.members_changed:
            sent.append(
                self.mqtt.publish(
                    topics.conv_members_changed(),
                    MembersChanged(conv_id=conv_id).model_dump_json().encode(),
                )
            )
        await asyncio.gather(*sent)
        changed = outcome.queue_changed or outcome.floor_changed or outcome.route
        if self.views_elsewhere is not None:
            if changed:
                self.views_elsewhere()
        else:
            self.views_soon(queue=outcome.queue_changed, floor=outcome.floor_changed)

    def observe_queue(self, snapshot: QueueSnapshot) -> None:
        """A queue published by any instance: what its users were told."""
        for view in snapshot.tickets:
            known = self._told.get(view.ticket_id)
            if known is None or known[0] <= view.version:
                self._told[view.ticket_id] = (view.version, view.position)

    def views_soon(self, *, queue: bool = True, floor: bool = True) -> None:
        """Rebuild the live views shortly (changes meanwhile share the rebuild)."""
        if queue and (self._queue_task is None or self._queue_task.done()):
            self._queue_task = self._later(QUEUE_COALESCE_SECONDS, self.publish_queue)
        if floor and (self._floor_task is None or self._floor_task.done()):
            self._floor_task = self._later(FLOOR_COALESCE_SECONDS, self.publish_floor)

    @staticmethod
    def _later(delay: float, publish: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        async def run() -> None:
            await asyncio.sleep(delay)
            try:
                await publish()
            except Exception:
                # The next change (or the router's sweep) publishes it again.
                log.exception("support view not published")

        return asyncio.get_running_loop().create_task(run())

    async def publish_queue(self, now: datetime | None = None, *, if_moved: bool = False) -> None:
        """The retained queue, and a `queued` to each user whose position moved.
        `if_moved`: only when the order changed since the last one (the sweep,
        for aging)."""
        now = now or utcnow()
        views = await self.db.run(support_views.queue_views, self.rules, now)
        shape = [(v.ticket_id, v.version, v.effective_priority) for v in views]
        if if_moved and shape == self._last_queue:
            return
        self._last_queue = shape
        metrics.SUPPORT_QUEUE.set(len(views))
        snapshot = QueueSnapshot(tickets=views, updated_at=to_wire(now))
        sent: list[asyncio.Future[Any]] = [
            self.mqtt.publish(
                topics.ops_queue(), snapshot.model_dump_json().encode(), qos=1, retain=True
            )
        ]
        moved = [v for v in views if self._told.get(v.ticket_id) != (v.version, v.position)]
        if moved:
            estimate = await self._estimator()  # the positions are the views' own
            for view in moved:
                # Never told anything yet: a new ticket, waiting.
                reason: SupportReason | None = "new" if view.ticket_id not in self._told else None
                sent.append(
                    self._tell_user(
                        _brief_of(view),
                        "queued",
                        reason,
                        view.position,
                        estimate(view.position) if view.position else None,
                    )
                )
        waiting = {v.ticket_id for v in views}
        self._told = {k: v for k, v in self._told.items() if k in waiting}
        await asyncio.gather(*sent)

    async def publish_floor(self, now: datetime | None = None) -> None:
        now = now or utcnow()
        operators = await self.db.run(support_views.operator_views)
        stats = await self.db.run(support_views.wait_stats, now)
        snapshot = FloorSnapshot(operators=operators, stats=stats, updated_at=to_wire(now))
        await self.mqtt.publish(
            topics.ops_floor(), snapshot.model_dump_json().encode(), qos=1, retain=True
        )

    async def _waiting(self, now: datetime) -> tuple[dict[str, int], Callable[[int], int | None]]:
        """Current positions, and the wait estimate for a position."""
        current = await self.db.run(store.floor, now, self.rules)
        capacity = serving_capacity(current.operators)
        return store.positions(current.queue), await self._estimator(capacity)

    async def _estimator(self, capacity: int | None = None) -> Callable[[int], int | None]:
        """The wait estimate for a position (docs/support.md); `capacity` of
        the operators online is read unless the caller has it."""
        if capacity is None:
            capacity = await self.db.run(store.online_capacity)
        handling = await self.db.run(support_views.handling_seconds) if capacity else None

        def estimate(position: int) -> int | None:
            return estimated_wait_seconds(position, capacity, handling)

        return estimate

    def _tell_user(
        self,
        ticket: Brief,
        event: SupportEventName,
        reason: SupportReason | None,
        position: int | None,
        estimate: int | None,
    ) -> asyncio.Future[Any]:
        waiting = event == "queued" or (event == "transferred" and ticket.agent is None)
        if waiting:
            self._told[ticket.ticket_id] = (ticket.version, position)
        payload = (
            SupportEvent(
                event=event,
                ticket_id=ticket.ticket_id,
                conv_id=ticket.conv_id,
                position=position if waiting else None,
                agent=ticket.agent,
                version=ticket.version,
                reason=reason,
                estimated_wait_seconds=estimate if waiting else None,
                priority=ticket.priority,
            )
            .model_dump_json()
            .encode()
        )
        sent = [self.mqtt.publish(topics.user_support(ticket.user_id), payload)]
        if event in PUSHED_EVENTS:
            sent.append(self.mqtt.publish(topics.push_support(ticket.user_id), payload))
        return asyncio.gather(*sent)


def wake_router(mqtt: AsyncMqtt, reason: Literal["queued", "changed"] = "changed") -> None:
    """Ask one router instance to walk the queue and publish the live views."""
    mqtt.publish(topics.support_wake(), Wake(reason=reason).model_dump_json().encode())


def _brief_of(view: TicketView) -> Brief:
    return Brief(
        view.ticket_id, view.user.id, view.conv_id, view.version, view.priority, view.agent
    )
