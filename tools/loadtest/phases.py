"""One phase of a run: traffic flows, maybe a fault happens, then the phase's
messages are settled and checked against the database.

Definitions (docs/load.md, "The fault table"):
- sent: acknowledged to the sender as stored (MQTT ack, or HTTP 201/200);
- stored: has a row in the database (by client message id);
- delivered: the other member received it (message ids, de-duplicated);
- lost: acknowledged but not stored, or stored but not delivered once the
  phase has settled;
- duplicates: rows beyond the first for one client message id;
- unacked: sent but neither acknowledged nor refused when settling gave up
  (the sender still holds it; not lost, but not done either);
- recovery: from the fault's end (the part started again) until a message sent
  at or after that moment reached the other member, on every path (MQTT and
  HTTP sends) the traffic uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from tools.bench_support import percentile
from tools.loadtest.faults import Fault
from tools.loadtest.ledger import PATHS, FreshWatch, Ledger, Phase, Sent
from tools.loadtest.pool import HolderPool
from tools.loadtest.stored import stored_rows
from tools.loadtest.traffic import Traffic

LOST_SHOWN = 20
# What `Runner.recount` counts again at the end of the run.
RECOUNTED = (
    "sent",
    "stored",
    "delivered",
    "lost",
    "duplicates",
    "unacked",
    "refused",
    "lost_detail",
)


@dataclass(frozen=True)
class Timing:
    before_seconds: float  # traffic before the fault
    after_seconds: float  # traffic after recovery (at least)
    recovery_timeout: float  # give up waiting for recovery after this long
    settle_seconds: float  # stop waiting for acks and deliveries after this long without any
    settle_max_seconds: float  # and after this long in any case


@dataclass
class PhaseResult:
    name: str
    tried: int  # sends made
    sent: int  # acknowledged as stored
    stored: int
    delivered: int
    lost: int
    duplicates: int
    unacked: int
    refused: dict[str, int]  # ack status -> count, for sends not acknowledged as stored
    p50_ms: float  # send -> the other member has it (MQTT sends)
    p99_ms: float
    ack_p50_ms: float  # send -> the sender has the ack (stored), MQTT sends
    ack_p99_ms: float
    restart_seconds: float | None = None  # the part's start, until it said it was up
    recovery_seconds: float | None = None  # None with a fault: not recovered
    reconnected_seconds: float | None = None  # every device connection back
    drops_connections: bool = False  # the fault cut every connection (the broker)
    traffic_seconds: float = 0.0  # how long the phase's traffic ran
    settle_seconds: float = 0.0  # after the traffic stopped, until all was settled
    lost_detail: list[str] = field(default_factory=list)
    # Unsettled when the phase closed, settled by the end of the run (recount).
    late: int = 0
    fault: str = ""

    @property
    def clean(self) -> bool:
        recovered = not self.fault or self.recovery_seconds is not None
        if self.drops_connections:
            recovered = recovered and self.reconnected_seconds is not None
        return self.lost == 0 and self.duplicates == 0 and self.unacked == 0 and recovered


def _describe(sent: Sent, rows: int) -> str:
    ack = sent.ack_status or "no ack"
    delivered = "delivered" if sent.delivered_at is not None else "not delivered"
    return (
        f"{sent.client_msg_id} ({sent.path}, conv {sent.conv_id}, sender {sent.sender_id}): "
        f"{ack}, {rows} row(s), {delivered}"
    )


async def settle(phases: list[Phase], ledger: Ledger, timing: Timing) -> float:
    """Wait until every send is refused or acknowledged and delivered; give up
    once nothing was acknowledged or delivered for `settle_seconds` (a system
    still draining a backlog is waited for), or after `settle_max_seconds`.
    Returns the seconds it took."""
    started = last_move = time.monotonic()
    seen = ledger.progress
    # Polled: arrivals come from many receivers; a count every 0.2 s is cheap.
    while any(phase.unsettled() for phase in phases):
        now = time.monotonic()
        if ledger.progress != seen:
            seen, last_move = ledger.progress, now
        elif now - last_move > timing.settle_seconds:
            break
        if now - started > timing.settle_max_seconds:
            break
        await asyncio.sleep(0.2)
    return time.monotonic() - started


async def account(phase: Phase, database_url: str) -> PhaseResult:
    """Compare what the ledger saw with what the database holds."""
    sends = list(phase.sends.values())
    rows = await stored_rows(
        database_url, {s.conv_id for s in sends}, [s.client_msg_id for s in sends]
    )
    acknowledged = [s for s in sends if s.acknowledged]
    stored = [s for s in sends if rows[s.client_msg_id] > 0]
    lost = [s for s in acknowledged if rows[s.client_msg_id] == 0]
    lost += [s for s in stored if s.delivered_at is None]
    refused: dict[str, int] = {}
    for s in sends:
        if s.ack_status is not None and not s.acknowledged:
            refused[s.ack_status] = refused.get(s.ack_status, 0) + 1
    latencies = [s.latency_ms for s in sends if s.path == "mqtt" and s.latency_ms is not None]
    acks = [s.ack_ms for s in sends if s.path == "mqtt" and s.ack_ms is not None]
    return PhaseResult(
        name=phase.name,
        traffic_seconds=phase.traffic_seconds,
        tried=len(sends),
        sent=len(acknowledged),
        stored=len(stored),
        delivered=sum(len(s.delivered_ids) for s in sends),
        lost=len(lost),
        duplicates=sum(max(0, n - 1) for n in rows.values()),
        unacked=sum(1 for s in sends if s.ack_status is None),
        refused=refused,
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        ack_p50_ms=percentile(acks, 50),
        ack_p99_ms=percentile(acks, 99),
        lost_detail=[_describe(s, rows[s.client_msg_id]) for s in lost[:LOST_SHOWN]],
    )


class Runner:
    """Runs phases one after another on one traffic generator."""

    def __init__(
        self,
        traffic: Traffic,
        ledger: Ledger,
        pool: HolderPool,
        database_url: str,
        timing: Timing,
        say: Callable[[str], None],
    ) -> None:
        self.traffic = traffic
        self.ledger = ledger
        self.pool = pool
        self.database_url = database_url
        self.timing = timing
        self.say = say
        self.paths = tuple(p for p in PATHS if self._uses(p))

    def _uses(self, path: str) -> bool:
        if path == "http":
            return bool(self.traffic.http_lanes)
        return bool(self.traffic.mqtt_lanes)

    @contextlib.asynccontextmanager
    async def _traffic(self, phase: Phase) -> AsyncIterator[None]:
        stop = asyncio.Event()
        started = time.perf_counter()
        sending = asyncio.create_task(self.traffic.run(phase, stop), name=f"traffic-{phase.name}")
        try:
            yield
        finally:
            stop.set()
            await sending
            phase.traffic_seconds = time.perf_counter() - started

    async def steady(
        self, name: str, seconds: float, during: Callable[[], Awaitable[None]]
    ) -> PhaseResult:
        """Traffic for `seconds`, calling `during()` (a coroutine function) meanwhile."""
        phase = self.ledger.open_phase(name)
        async with self._traffic(phase):
            await asyncio.gather(asyncio.sleep(seconds), during())
        return await self._settle_and_account(phase)

    async def _settle_and_account(self, phase: Phase) -> PhaseResult:
        settled = await settle([phase], self.ledger, self.timing)
        result = await account(phase, self.database_url)
        result.settle_seconds = settled
        phase.unsettled_when_closed = {c for c, s in phase.sends.items() if not s.settled}
        return result

    async def fault(self, fault: Fault) -> PhaseResult:
        timing = self.timing
        phase = self.ledger.open_phase(fault.name)
        self.say(f"fault {fault.name}: {fault.what}")
        async with self._traffic(phase):
            await asyncio.sleep(timing.before_seconds)
            expected = self.pool.connected
            reconnects = self.pool.reconnects
            await asyncio.to_thread(fault.inject)
            await asyncio.sleep(fault.down_seconds)
            ended = time.perf_counter()
            # Watching from the fault's end: messages flow again while a part
            # the chat path does not need is still starting.
            with self.ledger.watch(ended, self.paths) as watch:
                await asyncio.to_thread(fault.repair)
                restart = time.perf_counter() - ended
                drops = fault.drops_connections
                recovery, reconnected = await asyncio.gather(
                    self._recovery(watch, ended),
                    self._reconnected(ended, expected, reconnects if drops else None),
                )
            linger = ended + timing.after_seconds - time.perf_counter()
            await asyncio.sleep(max(0.0, linger))
        result = await self._settle_and_account(phase)
        result.fault = fault.what
        result.restart_seconds = restart
        result.recovery_seconds = recovery
        result.reconnected_seconds = reconnected
        result.drops_connections = fault.drops_connections
        return result

    async def recount(self, results: list[PhaseResult]) -> float:
        """At the end of the run: give every phase's stragglers a last chance,
        then count again. `lost` becomes what never arrived at all; `late` is
        what was still unsettled when its phase closed and settled since."""
        phases = self.ledger.phases
        settled = await settle(phases, self.ledger, self.timing)
        for index, (phase, result) in enumerate(zip(phases, results, strict=True)):
            fresh = await account(phase, self.database_url)
            late = sum(1 for c in phase.unsettled_when_closed if phase.sends[c].settled)
            results[index] = dataclasses.replace(
                result,
                **{name: getattr(fresh, name) for name in RECOUNTED},
                late=late,
            )
        return settled

    async def _recovery(self, watch: FreshWatch, ended: float) -> float | None:
        """Seconds from `ended` until a fresh message arrived on every path."""
        remaining = ended + self.timing.recovery_timeout - time.perf_counter()
        try:
            await asyncio.wait_for(watch.done.wait(), max(0.0, remaining))
        except TimeoutError:
            return None
        return watch.last_path_at - ended

    async def _reconnected(
        self, ended: float, expected: int, reconnects_before: int | None
    ) -> float | None:
        """Seconds from `ended` until the held connections were all up again
        (and, after a broker fault, each had reconnected)."""

        def back(pool: HolderPool) -> bool:
            if pool.connected < expected:
                return False
            return reconnects_before is None or pool.reconnects >= reconnects_before + expected

        remaining = ended + self.timing.recovery_timeout - time.perf_counter()
        if not await self.pool.wait_until(back, remaining):
            return None
        return max(0.0, time.perf_counter() - ended)
