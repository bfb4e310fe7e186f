"""The support router: waiting tickets to operators, and the timers around them.

Inputs: `svc/support/wake` (the API: a ticket opened, an operator changed
status, a slot freed) and `svc/presence/changed/{uid}` (the presence tracker).
Each makes the router walk the queue (services/support_router/queue.py picks;
store.claim claims atomically) and publish what changed (notify.py).

Timers (APScheduler, in memory; the database holds every deadline, so the
sweep rebuilds them after a restart or for an instance that died):
- the first-response SLA of every assigned ticket;
- the grace of every operator who disconnected;
- the sweep (`SUPPORT_SWEEP_SECONDS`): presence reconciled with the database,
  operators gone past the grace released, missing SLA timers scheduled, the
  queue walked again (aging may have reordered it) and re-published if it moved.

Any number of instances may run: a claim that loses a race changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bridge import topics
from bridge.mqtt import Inbound
from bridge.service import ServiceRuntime
from bridge.wire.base import WireError, decode
from bridge.wire.support import PresenceChange, QueueSnapshot, Wake
from core.config import Settings
from core.database import Database
from core.timefmt import utcnow
from services.support_router import store
from services.support_router.notify import Notifier
from services.support_router.outcome import Conflict, Outcome, Rules
from services.support_router.queue import Candidate, pick_operator
from services.sweeps import run_once_at, start_with_sweep, stop_scheduler

log = logging.getLogger(__name__)


def rules_from(settings: Settings) -> Rules:
    return Rules(
        aging_seconds=settings.support_aging_seconds,
        sla_seconds={
            "urgent": settings.support_sla_urgent_seconds,
            "high": settings.support_sla_high_seconds,
            "normal": settings.support_sla_normal_seconds,
            "low": settings.support_sla_low_seconds,
        },
    )


class SupportRouter:
    def __init__(self, runtime: ServiceRuntime, db: Database, settings: Settings) -> None:
        self.runtime = runtime
        self.db = db
        self.settings = settings
        self.rules = rules_from(settings)
        self.grace = timedelta(seconds=settings.support_operator_grace_seconds)
        self.notifier = Notifier(runtime.mqtt, db, self.rules)
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        # One walk of the queue at a time per instance; a request during a walk
        # makes one more walk after it (requests coalesce).
        self._walking = asyncio.Lock()
        self._walk_again = False
        runtime.route(topics.support_wake(), 1, self.on_wake)
        runtime.route(topics.presence_changed_filter(), 1, self.on_presence)
        # Every instance reads the retained queue (what users were told).
        runtime.route(topics.ops_queue(), 1, self.on_queue, shared=False)

    def start_background(self) -> None:
        start_with_sweep(self.scheduler, self._sweep, self.settings.support_sweep_seconds)

    async def stop(self) -> None:
        stop_scheduler(self.scheduler)

    # --- inputs ------------------------------------------------------------------------

    async def on_wake(self, message: Inbound) -> None:
        try:
            decode(Wake, message.payload)
        except WireError as error:
            log.warning("ignored wake-up: %s", error.message)
            return
        await self.walk()
        # The API changed something: the views are rebuilt here, not there.
        self.notifier.views_soon()

    async def on_queue(self, message: Inbound) -> None:
        try:
            self.notifier.observe_queue(decode(QueueSnapshot, message.payload))
        except WireError as error:
            log.warning("ignored queue snapshot: %s", error.message)

    async def on_presence(self, message: Inbound) -> None:
        try:
            change = decode(PresenceChange, message.payload)
        except WireError as error:
            log.warning("ignored presence change: %s", error.message)
            return
        now = utcnow()
        outcome = await self.db.run(store.set_connected, change.user_id, change.online, now)
        if outcome is None:
            return  # not an operator
        if not change.online:
            self._schedule_grace(change.user_id, now + self.grace)
        await self.apply(outcome)

    # --- routing ---------------------------------------------------------------------------

    async def walk(self) -> None:
        """Give every waiting ticket that can be given an operator, in queue order."""
        if self._walking.locked():
            self._walk_again = True
            return
        async with self._walking:
            self._walk_again = True
            while self._walk_again:
                self._walk_again = False
                await self._walk_once()

    async def _walk_once(self) -> None:
        now = utcnow()
        current = await self.db.run(store.floor, now, self.rules)
        operators = list(current.operators)
        claimed = Outcome()
        for ticket in current.queue:
            chosen = pick_operator(operators, ticket.skip_operator_id)
            if chosen is None:
                break  # nobody is eligible for anything
            try:
                outcome = await self.db.run(
                    store.claim,
                    ticket.ticket_id,
                    chosen.operator_id,
                    now,
                    self.rules,
                    "routed",
                    chosen.name,
                )
            except Conflict as conflict:
                # Another instance (or an operator by hand) got there first, or
                # the operator changed: read again and go on next time round.
                log.info("claim of %s lost: %s", ticket.ticket_id, conflict.code)
                self._walk_again = True
                break
            # The user hears at once; the views are published once, after the walk.
            claimed.merge(outcome)
            fast = Outcome(notices=outcome.notices, members_changed=outcome.members_changed)
            await self.notifier.publish(fast)
            self._schedule_deadlines(outcome)
            operators = [
                _taken(c, now) if c.operator_id == chosen.operator_id else c for c in operators
            ]
        if claimed.notices:
            await self.notifier.publish(Outcome(queue_changed=True, floor_changed=True))

    async def apply(self, outcome: Outcome) -> None:
        """Publish a change made here, watch its deadlines, and route if it asks."""
        await self.notifier.publish(outcome)
        self._schedule_deadlines(outcome)
        if outcome.route:
            await self.walk()

    # --- timers ------------------------------------------------------------------------------

    def _schedule_deadlines(self, outcome: Outcome) -> None:
        for ticket_id, version, deadline in outcome.deadlines:
            self._schedule_sla(ticket_id, version, deadline)

    def _schedule_sla(self, ticket_id: str, version: int, deadline: datetime) -> None:
        job_id = f"sla:{ticket_id}:{version}"
        run_once_at(self.scheduler, job_id, deadline, self._check_sla, ticket_id, version)

    async def _check_sla(self, ticket_id: str, version: int) -> None:
        outcome = await self.db.run(store.check_first_response, ticket_id, version, utcnow())
        if not outcome.empty:
            log.info("ticket %s missed its first-response SLA: escalated", ticket_id)
            await self.apply(outcome)

    def _schedule_grace(self, operator_id: str, at: datetime) -> None:
        run_once_at(self.scheduler, f"grace:{operator_id}", at, self._release_gone)

    async def _release_gone(self) -> None:
        now = utcnow()
        outcome = await self.db.run(store.release_gone, now - self.grace, now)
        if not outcome.empty:
            log.info("released the tickets of operators offline past the grace")
            await self.apply(outcome)

    async def _sweep(self) -> None:
        try:
            now = utcnow()
            await self.apply(await self.db.run(store.reconcile_connections, now))
            await self._release_gone()
            for ticket_id, version, deadline in await self.db.run(store.open_deadlines):
                if self.scheduler.get_job(f"sla:{ticket_id}:{version}") is None:
                    self._schedule_sla(ticket_id, version, deadline)
            await self.walk()
            await self.notifier.publish_queue(if_moved=True)
        except Exception:
            log.exception("support sweep failed; the next one tries again")


def _taken(candidate: Candidate, now: datetime) -> Candidate:
    return Candidate(
        candidate.operator_id,
        candidate.status,
        candidate.connected,
        candidate.open_chats + 1,
        candidate.capacity,
        now,
        candidate.name,
    )
