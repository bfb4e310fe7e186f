"""The call signaling service: call actions in, call events out.

Per action: parse (bad input becomes an `error` event to its sender), run the
transition in one transaction (services/callsig/machine.py), then publish what
it decided: events to each party, notices for the push service, each party's
retained call state; and only then acknowledge the inbound MQTT message (the
runtime does, when the handler returns), so a crash re-runs it.

Timers (APScheduler, in memory): the ring timeout of every ringing call, and the
join grace of every answered one. Memory is enough because the database holds
every deadline: on start, and every `call_sweep_seconds`, the service schedules
each ringing call it does not hold yet (its own from before a restart, or those
of an instance that died), and ends answered calls past their join grace. A
timer firing twice, or on two instances, is harmless: transitions are
conditional on the state they leave.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bridge import topics
from bridge.mqtt import Inbound
from bridge.service import ServiceRuntime
from bridge.topics import CallAction
from bridge.wire.base import WireError, decode
from bridge.wire.calls import (
    AcceptUp,
    CallEvent,
    CallState,
    EmptyUp,
    InviteUp,
    LiveCall,
    PushCallNotice,
    RecordingInfo,
    RecordUp,
)
from core import metrics
from core.config import Settings
from core.database import Database
from core.ids import is_valid_id
from core.logs import bind_log_ids
from core.pg_line import PgLine
from core.timefmt import to_wire, utcnow
from services.callsig import invite_pg, livekit_events, machine
from services.callsig.livekit_server import LiveKitServer, LiveKitUnavailable
from services.callsig.machine import CallView, Effects, InviteRequest, Notice, PushEvent, Refusal
from services.callsig.tokens import TokenMinter
from services.callsig.webhooks import update_from_webhook
from services.sweeps import run_once_at, start_with_sweep, stop_scheduler

log = logging.getLogger(__name__)

# Rooms of calls that ended longer ago than this are no longer retried.
ROOM_CLOSE_WINDOW = timedelta(hours=1)
STATE_VERIFY_SECONDS = 1.0

StateKey = list[tuple[str, str, str | None]]


def _state_key(calls: list[machine.LiveCall]) -> StateKey:
    return [(live.call.call_id, live.status, live.device_id) for live in calls]


class CallSignaling:
    def __init__(
        self,
        runtime: ServiceRuntime,
        db: Database,
        settings: Settings,
        minter: TokenMinter,
        livekit: LiveKitServer,
    ) -> None:
        self.runtime = runtime
        self.livekit = livekit
        self.mqtt = runtime.mqtt
        self.db = db
        # PostgreSQL: the common invite's one statement, on a connection of its own.
        self.line = (
            PgLine(settings.effective_database_url)
            if db.engine.dialect.name == "postgresql"
            else None
        )
        self.settings = settings
        self.minter = minter
        self.ring_timeout = timedelta(seconds=settings.call_ring_timeout_seconds)
        self.join_grace = timedelta(seconds=settings.call_join_grace_seconds)
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        # Rooms whose closing failed once (logged once, then retried quietly).
        self._close_failures: set[str] = set()
        # The call state this instance last published per user, until verified.
        self._published: dict[str, StateKey] = {}
        runtime.route(topics.call_up_filter(), 1, self.on_action)
        runtime.route(topics.livekit_webhook(), 1, self.on_webhook)

    def start_background(self) -> None:
        self.runtime.spawn(self._verify_states_forever(), "verify-call-states")
        start_with_sweep(self.scheduler, self._sweep, self.settings.call_sweep_seconds)

    async def stop(self) -> None:
        stop_scheduler(self.scheduler)
        await self.livekit.close()
        if self.line is not None:
            await self.line.close()

    # --- actions -------------------------------------------------------------------------

    async def on_action(self, message: Inbound) -> None:
        up = topics.parse_call_up(message.topic)
        if up is None:
            return
        bind_log_ids(call_id=up.call_id, user_id=up.user_id)
        try:
            effects = await self._transition(up, message.payload)
        except WireError as error:
            log.info("refused %s: %s", message.topic, error.message)
            effects = Effects().refuse(Refusal(up.user_id, up.call_id, "invalid_payload"))
        for refusal in effects.refusals:
            log.info("refused %s: %s", message.topic, refusal.reason)
        await self.apply(effects)

    async def _transition(self, up: topics.CallUp, payload: bytes) -> Effects:
        if not is_valid_id(up.call_id):
            raise WireError("invalid_payload", "call id is not a valid id")
        now = utcnow()
        match up.action:
            case CallAction.INVITE:
                invite = decode(InviteUp, payload)
                request = InviteRequest(
                    up.call_id, up.user_id, invite.to, invite.media, now, self.ring_timeout
                )
                return await self._invite(request)
            case CallAction.ACCEPT:
                accept = decode(AcceptUp, payload)
                return await self.db.run(
                    machine.accept, up.call_id, up.user_id, accept.device_id, now
                )
            case CallAction.DECLINE:
                decode(EmptyUp, payload)
                return await self.db.run(machine.decline, up.call_id, up.user_id, now)
            case CallAction.HANGUP:
                decode(EmptyUp, payload)
                return await self.db.run(machine.hangup, up.call_id, up.user_id, now)
            case CallAction.RECORD:
                record = decode(RecordUp, payload)
                return await self.db.run(
                    livekit_events.request_recording,
                    up.call_id,
                    up.user_id,
                    record.recording,
                    self.settings.recording_enabled,
                )
        raise AssertionError(f"unhandled call action {up.action}")

    async def _invite(self, request: InviteRequest) -> Effects:
        if self.line is None:
            return await self.db.run(machine.invite, request)
        names = await invite_pg.try_ring_on(self.line, request)
        if names is not None:
            return machine.rang(request, *names)
        return await self.db.run(machine.invite_in_transaction, request)

    async def on_webhook(self, message: Inbound) -> None:
        """A LiveKit webhook, verified by the API (only services publish here)."""
        change = update_from_webhook(message.payload)
        if change is None:
            return
        await self.apply(await self.db.run(livekit_events.apply_livekit, change, utcnow()))

    # --- timers ---------------------------------------------------------------------------

    async def _expire(self, call_id: str, deadline: datetime) -> None:
        # max(): a timer may fire a hair before the stored deadline.
        now = max(utcnow(), deadline)
        await self.apply(await self.db.run(machine.expire, call_id, now))

    async def _end_if_unjoined(self, call_id: str) -> None:
        await self.apply(await self.db.run(machine.end_if_unjoined, call_id, utcnow()))

    def _schedule_ring(self, call_id: str, deadline: datetime) -> None:
        run_once_at(self.scheduler, f"ring:{call_id}", deadline, self._expire, call_id, deadline)

    def _unschedule(self, job_id: str) -> None:
        # Absent when it fired already, or when another instance scheduled it.
        with contextlib.suppress(JobLookupError):
            self.scheduler.remove_job(job_id)

    async def _sweep(self) -> None:
        """Pick up deadlines this instance does not hold (see the module doc)."""
        try:
            deadlines = await self.db.run(machine.ringing_deadlines)
            for call_id, deadline in deadlines.items():
                if self.scheduler.get_job(f"ring:{call_id}") is None:
                    self._schedule_ring(call_id, deadline)
            if self.join_grace:
                cutoff = utcnow() - self.join_grace
                for call_id in await self.db.run(machine.unjoined_since, cutoff):
                    await self._end_if_unjoined(call_id)
            ended_after = utcnow() - ROOM_CLOSE_WINDOW
            for call_id in await self.db.run(livekit_events.rooms_to_close, ended_after):
                await self._close_room(call_id)
        except Exception:
            log.exception("call sweep failed; the next one tries again")

    # --- publishing --------------------------------------------------------------------------

    async def apply(self, effects: Effects) -> None:
        """Publish what a committed transition decided, and move the timers.

        Events first: they leave while the rest is done (a timer lost to a
        crash here is found again by the sweep). The first event is the one a
        phone waits on (the callee's `incoming`, the callee's `cancelled`), and
        the rest waits until the broker has acknowledged it. Why: on two cores
        the rest of this work (the next token, the push notice, the retained
        states, the timers) otherwise competes for a processor with the broker,
        the gateway and the phone while they carry that event. Measured on
        SQLite, invite → `incoming` p50 at 10 / 50 calls/s, two runs each:
        3.41-3.44 / 2.98-3.09 ms without the wait, 3.07-3.21 / 2.78-2.85 ms
        with it."""
        now = utcnow()
        sent = []
        for notice in effects.notices:
            sent.append(self._send_notice(notice))
            self.mqtt.flush()  # on its way before the next token is minted
            if len(sent) == 1:
                # Not `await sent[0]`: its failure is raised by the gather below,
                # once everything else has been queued.
                await asyncio.wait(sent)
        sent += [self._send_refusal(refusal) for refusal in effects.refusals]
        sent += [self._send_push(event, call, now) for event, call in effects.pushes]
        self._move_timers(effects, now)
        await asyncio.gather(*sent)
        if effects.states:
            await asyncio.gather(
                *(self._publish_state(user, calls) for user, calls in effects.states.items())
            )
        for call_id, audio_only in effects.start_recording:
            await self._start_recording(call_id, audio_only)
        for egress_id in effects.stop_recording:
            await self._stop_recording(egress_id)
        for call_id in effects.ended:
            self.runtime.spawn(self._close_room(call_id), f"close-room:{call_id}")

    # --- LiveKit --------------------------------------------------------------------------

    async def _close_room(self, call_id: str) -> None:
        try:
            await self.livekit.close_room(call_id)
        except LiveKitUnavailable as error:
            if call_id not in self._close_failures:
                self._close_failures.add(call_id)
                log.warning("room not closed yet (retried by the sweep): %s", error)
            return
        self._close_failures.discard(call_id)
        await self.db.run(livekit_events.room_closed, call_id, utcnow())

    async def _start_recording(self, call_id: str, audio_only: bool) -> None:
        try:
            recording = await self.livekit.start_recording(call_id, audio_only=audio_only)
        except LiveKitUnavailable as error:
            log.warning("recording not started: %s", error)
            effects = await self.db.run(livekit_events.recording_started, call_id, None, "failed")
        else:
            effects = await self.db.run(
                livekit_events.recording_started, call_id, recording.egress_id, recording.status
            )
        await self.apply(effects)

    async def _stop_recording(self, egress_id: str) -> None:
        try:
            await self.livekit.stop_recording(egress_id)
        except LiveKitUnavailable as error:
            # LiveKit stops a recording by itself when its room is deleted.
            log.warning("recording not stopped: %s", error)

    def _move_timers(self, effects: Effects, now: datetime) -> None:
        for call_id, deadline in effects.ringing.items():
            self._schedule_ring(call_id, deadline)
        for call_id in effects.answered:
            self._unschedule(f"ring:{call_id}")
            if self.join_grace:
                run_once_at(
                    self.scheduler,
                    f"join:{call_id}",
                    now + self.join_grace,
                    self._end_if_unjoined,
                    call_id,
                )
        for call_id in effects.ended:
            self._unschedule(f"ring:{call_id}")
            self._unschedule(f"join:{call_id}")

    def _send_push(self, event: PushEvent, call: CallView, now: datetime) -> asyncio.Future[None]:
        notice = PushCallNotice(
            event=event,
            call_id=call.call_id,
            from_=call.caller.user_id,
            from_name=call.caller.name,
            to=call.callee.user_id,
            media=call.media,
            at=to_wire(now),
        )
        return self.mqtt.publish(
            topics.push_call(call.callee.user_id), notice.model_dump_json().encode()
        )

    def _send_notice(self, notice: Notice) -> asyncio.Future[None]:
        call = notice.call
        event = CallEvent(
            event=notice.event,
            call_id=call.call_id,
            from_=call.caller.user_id,
            to=call.callee.user_id,
            media=call.media,
            livekit=(
                self.minter.join(call.call_id, notice.user.user_id, notice.user.name)
                if notice.token
                else None
            ),
            device_id=notice.device_id,
            reason=notice.reason,
            recording=RecordingInfo(status=notice.recording) if notice.recording else None,
        )
        metrics.CALL_EVENTS.labels(notice.event).inc()
        return self.mqtt.publish(
            topics.user_call(notice.user.user_id), event.model_dump_json().encode()
        )

    def _send_refusal(self, refusal: Refusal) -> asyncio.Future[None]:
        event = CallEvent(
            event="error",
            call_id=refusal.call_id,
            from_=refusal.from_,
            to=refusal.to,
            media=refusal.media,
            reason=refusal.reason,
        )
        metrics.CALL_EVENTS.labels("error").inc()
        return self.mqtt.publish(
            topics.user_call(refusal.user_id), event.model_dump_json().encode()
        )

    async def _verify_states_forever(self) -> None:
        """Re-publish any state this instance published that the database no
        longer agrees with.

        Two instances handling one user's calls at the same moment may publish
        that user's state in the other order than they committed it, leaving
        the broker an older state. The one that published the older state
        finds out here (at most a second later) and publishes the newer one.
        One query per second for all users, instead of one per transition."""
        while True:
            await asyncio.sleep(STATE_VERIFY_SECONDS)
            if not self._published:
                continue
            published, self._published = self._published, {}
            current = await self.db.run(machine.live_calls, list(published))
            stale = {u: calls for u, calls in current.items() if _state_key(calls) != published[u]}
            if stale:
                log.info("re-publishing the call state of %d user(s)", len(stale))
                await asyncio.gather(*(self._publish_state(u, c) for u, c in stale.items()))

    def _publish_state(self, user_id: str, calls: list[machine.LiveCall]) -> asyncio.Future[None]:
        """The user's retained call state (checked later: `_verify_states_forever`)."""
        self._published[user_id] = _state_key(calls)
        state = CallState(
            calls=[
                LiveCall(
                    call_id=live.call.call_id,
                    from_=live.call.caller.user_id,
                    to=live.call.callee.user_id,
                    media=live.call.media,
                    status="ringing" if live.status == "ringing" else "active",
                    device_id=live.device_id,
                    livekit=self.minter.join(
                        live.call.call_id,
                        user_id,
                        (
                            live.call.caller
                            if live.call.caller.user_id == user_id
                            else live.call.callee
                        ).name,
                    ),
                )
                for live in calls
            ]
        )
        return self.mqtt.publish(
            topics.user_call_state(user_id), state.model_dump_json().encode(), qos=1, retain=True
        )
