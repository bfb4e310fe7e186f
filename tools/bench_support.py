"""The parts of `tools/bench.py` that are not about MQTT: statistics, pacing,
one measured phase, throw-away databases and stacks, and the printed tables.

Kept apart so bench.py reads as the measurement itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg
from psycopg import sql

from bridge.mqtt import AsyncMqtt, Endpoint
from tools.broker import free_port
from tools.stack import Stack, StackConfig

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"

# Figures measured on this kind of machine (see /work/shared/notes.md), printed
# next to ours so a reader sees what the system is compared against.
ANCHOR_RAW_P50_MS = {"tcp": 0.30, "ws": 0.35}
ANCHOR_SOCKETIO_RELAY_MS = {500: (0.77, 2.9)}  # (p50, p99): a room relay storing nothing
ANCHOR_SOCKETIO_PG_P50_MS = {100: 2.25, 500: 1.48}
ANCHOR_SOCKETIO_PG_SATURATION = 1600
ANCHOR_POLLING_WAIT_MS = 750.0

# --- statistics -------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: every figure is a real sample)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


class Tracker:
    """One measured phase: when each message was sent and when it first arrived."""

    def __init__(self, prefix: str, expected: int) -> None:
        self.prefix = prefix
        self.expected = expected
        self.sent_at: dict[str, float] = {}
        self.latencies_ms: list[float] = []
        self.duplicates = 0
        self.first_send = math.inf
        self.last_receive = 0.0
        # conv_id -> [(send index, seq)]: lets the bench check order and gaps.
        self.seqs: dict[str, list[tuple[int, int]]] = {}
        self.acks: Counter[str] = Counter()
        self.done = asyncio.Event()
        self._arrived: set[str] = set()

    def client_msg_id(self, index: int) -> str:
        return f"{self.prefix}-{index}"

    def mark_sent(self, client_msg_id: str, at: float) -> None:
        self.sent_at[client_msg_id] = at
        self.first_send = min(self.first_send, at)

    def mark_received(
        self, client_msg_id: str, at: float, conv_id: str | None = None, seq: int | None = None
    ) -> None:
        sent = self.sent_at.get(client_msg_id)
        if sent is None:
            return  # a straggler of an earlier phase
        if client_msg_id in self._arrived:
            self.duplicates += 1
            return
        self._arrived.add(client_msg_id)
        self.latencies_ms.append((at - sent) * 1000)
        self.last_receive = max(self.last_receive, at)
        if conv_id is not None and seq is not None:
            index = int(client_msg_id.rsplit("-", 1)[1])
            self.seqs.setdefault(conv_id, []).append((index, seq))
        if len(self._arrived) >= self.expected:
            self.done.set()

    @property
    def received(self) -> int:
        return len(self._arrived)

    def order_problems(self) -> tuple[int, int]:
        """(messages out of send order, missing seq numbers) over all conversations."""
        reordered = gaps = 0
        for pairs in self.seqs.values():
            ordered = [seq for _index, seq in sorted(pairs)]
            reordered += sum(1 for a, b in itertools.pairwise(ordered) if b <= a)
            gaps += max(ordered) - min(ordered) + 1 - len(set(ordered))
        return reordered, gaps


@dataclass
class Result:
    """One row of the final table."""

    label: str
    rate: str
    sent: int
    latencies_ms: list[float]
    received: int
    transport: str = "ws"
    rate_value: int = 0
    delivered_per_s: float | None = None
    cpu: CpuUse | None = None
    notes: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, label: str, rate: str, tracker: Tracker, transport: str, rate_value: int) -> Result:
        result = cls(
            label, rate, len(tracker.sent_at), tracker.latencies_ms, tracker.received, transport
        )
        result.rate_value = rate_value
        span = tracker.last_receive - tracker.first_send
        if tracker.received and span > 0:
            result.delivered_per_s = tracker.received / span
        if result.lost:
            result.notes.append(f"{result.lost} not arrived by the end of the drain window")
        if tracker.duplicates:
            result.notes.append(f"{tracker.duplicates} duplicate deliveries")
        reordered, gaps = tracker.order_problems()
        if reordered or gaps:
            # The bench keeps many sends per conversation in flight; with several
            # instances the documented order rule needs one in flight (docs/protocol.md).
            result.notes.append(f"seq: {reordered} out of send order, {gaps} missing")
        rejected = sum(n for status, n in tracker.acks.items() if status != "stored")
        if rejected:
            result.notes.append(f"acks not 'stored': {dict(tracker.acks)}")
        return result

    @property
    def lost(self) -> int:
        return self.sent - self.received

    @property
    def p50(self) -> float:
        return percentile(self.latencies_ms, 50)

    @property
    def p99(self) -> float:
        return percentile(self.latencies_ms, 99)

    @property
    def max(self) -> float:
        return max(self.latencies_ms, default=math.nan)

    def summary(self) -> str:
        rate = f"{self.delivered_per_s:.0f}/s delivered" if self.delivered_per_s else ""
        text = (
            f"{self.label} @ {self.rate}: p50 {self.p50:.2f} ms, p99 {self.p99:.2f} ms, "
            f"max {self.max:.1f} ms, {self.received}/{self.sent} received {rate}"
        )
        cpu = [self.cpu.per_message(self.sent)] if self.cpu and self.sent else []
        return "; ".join([text, *cpu, *self.notes])


# --- where the CPU goes --------------------------------------------------------------------
# The machine is shared (and small), so each phase records the CPU its processes
# used: a figure per message that other load on the machine does not distort,
# and a check that the load generator is not the bottleneck.

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc), 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0.0, 0.0
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / _TICKS, sum(values) / _TICKS


@dataclass(frozen=True)
class CpuUse:
    seconds: dict[str, float]  # CPU seconds per process
    wall: float
    machine_cores: float  # cores the whole machine kept busy, ours and anyone else's

    @property
    def other_cores(self) -> float:
        """Cores busy with things outside this run (other people's tests, say)."""
        ours = sum(self.seconds.values()) / self.wall if self.wall > 0 else 0.0
        return max(0.0, self.machine_cores - ours)

    def per_message(self, count: int) -> str:
        parts = [f"{name} {used / count * 1e6:.0f}" for name, used in self.seconds.items()]
        return (
            f"cpu us/msg: {', '.join(parts)}; "
            f"machine {self.machine_cores:.1f} cores busy, {self.other_cores:.1f} not ours"
        )


@dataclass
class CpuMeter:
    """CPU used by named processes (and this one) from `start` to `stop`."""

    pids: dict[str, int]
    started: dict[str, float]
    machine: tuple[float, float]
    wall: float

    @classmethod
    def start(cls, pids: dict[str, int]) -> CpuMeter:
        named = {"bench": os.getpid(), **pids}
        started = {name: _process_cpu(pid) for name, pid in named.items()}
        return cls(named, started, _machine_busy(), time.perf_counter())

    def stop(self) -> CpuUse:
        used = {name: _process_cpu(pid) - self.started[name] for name, pid in self.pids.items()}
        busy, total = _machine_busy()
        elapsed = total - self.machine[1]
        cores = os.cpu_count() or 1
        machine = (busy - self.machine[0]) / elapsed * cores if elapsed > 0 else 0.0
        return CpuUse(used, time.perf_counter() - self.wall, machine)


# --- pacing ---------------------------------------------------------------------------------


async def paced(count: int, rate: float | None, send: Callable[[int], None]) -> None:
    """Call `send(i)` for i < count at t0 + i/rate (an open-loop schedule).

    Late sends go out as a burst rather than shifting the schedule, so a slow
    moment does not quietly lower the offered rate. `rate=None` is a blast: as
    fast as possible, yielding every few sends so receivers keep stamping.
    """
    started = time.perf_counter()
    index = 0
    while index < count:
        if rate is None:
            due = min(count, index + 50)
        else:
            due = min(count, int((time.perf_counter() - started) * rate) + 1)
        while index < due:
            send(index)
            index += 1
        if rate is None:
            await asyncio.sleep(0)
        elif index < count:
            await asyncio.sleep(max(0.0, started + index / rate - time.perf_counter()))


# --- one measured phase -------------------------------------------------------------------

TEXT = "x" * 150  # the anchors' 150-byte body
SETTLE_SECONDS = 0.3  # lets stragglers and PUBACKs of one phase clear before the next

# Given a message's index and client_msg_id, builds its payload and returns the
# call that sends it; the send is stamped just before that call, so building the
# payload is not counted. The call returns what completes once the message has
# left (a PUBACK; an emit handed to its client's writer).
Prepare = Callable[[int, str], Callable[[], Awaitable[object]]]


class Board:
    """Where receivers report: whichever phase is being measured now."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.current: Tracker | None = None
        self.pids = pids  # the processes under test, whose CPU each phase records


@dataclass(frozen=True)
class Phase:
    """What one measured phase is: its row's name, offered rate and size."""

    label: str
    transport: str
    rate: int | None  # None: a blast
    count: int
    drain_seconds: float


async def measure_phase(board: Board, phase: Phase, prepare: Prepare, unconfirmed: str) -> Result:
    """Send `phase.count` messages at `phase.rate` through `prepare`; receivers
    stamp arrivals on `board`. `unconfirmed` names the sends that never completed."""
    tracker = Tracker(f"b{secrets.token_hex(4)}", phase.count)
    board.current = tracker
    confirmations: list[Awaitable[object]] = []

    def send(index: int) -> None:
        client_msg_id = tracker.client_msg_id(index)
        go = prepare(index, client_msg_id)
        tracker.mark_sent(client_msg_id, time.perf_counter())
        confirmations.append(go())

    meter = CpuMeter.start(board.pids)
    await paced(phase.count, phase.rate, send)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(tracker.done.wait(), phase.drain_seconds)
    failed = await _count_failed(confirmations, phase.drain_seconds)
    cpu = meter.stop()
    await asyncio.sleep(SETTLE_SECONDS)  # duplicates, if any, show up in this phase
    result = Result.of(phase.label, f"{phase.rate}", tracker, phase.transport, phase.rate or 0)
    if phase.rate is None:  # a blast's rate is what came out of it
        result.rate = f"{result.delivered_per_s or 0:.0f}/s"
    result.cpu = cpu
    if failed:
        result.notes.append(f"{failed} {unconfirmed}")
    print("  " + result.summary(), flush=True)
    return result


async def _count_failed(sends: list[Awaitable[object]], timeout: float) -> int:
    if not sends:
        return 0
    futures = [asyncio.ensure_future(send) for send in sends]
    try:
        outcomes = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), timeout)
    except TimeoutError:
        return sum(1 for f in futures if not f.done() or f.cancelled() or f.exception())
    return sum(1 for o in outcomes if isinstance(o, BaseException))


# --- endpoints, databases, stacks ---------------------------------------------------------


BENCH_PASSWORD = "bench-password-1"


async def register_with_device(
    http: httpx.AsyncClient, name: str
) -> tuple[str, str, dict[str, str]]:
    """A new user with one device: (user id, access token, the device's MQTT credentials)."""
    session = (
        await http.post(
            "/v1/auth/register",
            json={"username": name, "password": BENCH_PASSWORD, "display_name": name},
        )
    ).json()
    auth = {"Authorization": f"Bearer {session['access_token']}"}
    device = (await http.post("/v1/devices", json={"platform": "ios"}, headers=auth)).json()
    return session["user_id"], session["access_token"], device["mqtt"]


def device_connection(mqtt: dict[str, str]) -> AsyncMqtt:
    """A device's own connection over WebSocket, with no session kept."""
    return AsyncMqtt(
        ws_endpoint(mqtt["ws_url"]),
        client_id=mqtt["client_id"],
        username=mqtt["username"],
        password=mqtt["password"],
        clean_start=True,
        session_expiry=0,
    )


def ws_endpoint(ws_url: str) -> Endpoint:
    url = urlsplit(ws_url)
    if url.scheme != "ws" or not url.hostname:
        raise ValueError(f"{ws_url}: expected ws://host:port/path")
    return Endpoint(url.hostname, url.port or 80, "websockets", url.path or "/")


@contextlib.contextmanager
def database(kind: str, data_dir: Path) -> Iterator[str]:
    """A fresh, empty database; a PostgreSQL one is dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{data_dir / 'chat.db'}"
        return
    admin_url = os.environ.get("TEST_POSTGRES_URL", DEFAULT_PG)
    name = f"chat_bench_{secrets.token_hex(6)}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@contextlib.contextmanager
def livekit_double() -> Iterator[tuple[str, str]]:
    """LiveKit's server API (the test double) in its own process: (url, secret)."""
    port, secret = free_port(), secrets.token_urlsafe(32)
    env = {**os.environ, "LIVEKIT_API_KEY": "devkey", "LIVEKIT_API_SECRET": secret}
    process = subprocess.Popen(
        [sys.executable, "-m", "tools.livekit_double", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().decode().strip()  # printed once it listens
        yield url, secret
    finally:
        process.terminate()
        process.wait()


# A bench user sends far more than a real one may (10 conversations carry 500
# msg/s: 50 a second each) and the bench registers its users from one address,
# so its stacks lift those limits: the figures are the pipeline's, not the limiter's.
UNLIMITED = {
    "MESSAGE_RATE_PER_SECOND": "1000000",
    "MESSAGE_RATE_BURST": "1000000",
    "REGISTRATIONS_PER_HOUR": "1000000",
}


@contextlib.contextmanager
def running_stack(
    kind: str, instances: int, extra_env: dict[str, str] | None = None
) -> Iterator[Stack]:
    """A whole system on free ports; its data dir is kept only when something failed.

    LiveKit's server API is the test double (calls close their rooms through
    it), so no run waits on connections to a LiveKit that is not there. The
    per-user limits are lifted (`UNLIMITED`)."""
    data_dir = Path(tempfile.mkdtemp(prefix=f"chat-bench-{kind}-"))
    failed = True
    try:
        with database(kind, data_dir) as url, livekit_double() as (lk_url, lk_secret):
            config = StackConfig(
                data_dir=data_dir,
                database_url=url,
                persistence_instances=instances,
                log_level="WARNING",
                livekit_api_secret=lk_secret,
                extra_env={"LIVEKIT_API_URL": lk_url, **UNLIMITED, **(extra_env or {})},
            )
            stack = Stack(config)
            try:
                stack.start()
                yield stack
                failed = False
            finally:
                stack.stop()
    finally:
        noisy = print_log_digest(kind, data_dir / "logs")
        if failed or noisy:
            print(f"  [{kind}] logs kept in {data_dir / 'logs'}", flush=True)
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


def print_log_digest(kind: str, log_dir: Path, shown: int = 3) -> bool:
    """Print the first warnings and errors of each process (logs run at WARNING).

    A service that re-delivers, retries or fails under load says so in its log;
    the figures alone would not tell why. Returns whether there was any.
    """
    found = False
    for path in sorted(log_dir.glob("*.log")):
        lines = [
            line
            for line in path.read_text(errors="replace").splitlines()
            if any(level in line for level in (" WARNING ", " ERROR ", " CRITICAL ", "Traceback"))
        ]
        if not lines:
            continue
        found = True
        print(f"  [{kind}] {path.name}: {len(lines)} warning/error lines, first ones:", flush=True)
        for line in lines[:shown]:
            print(f"    {line[:300]}", flush=True)
    return found


# --- the table ---------------------------------------------------------------------------

HEADER = (
    f"{'path':<34}{'rate':>8}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
    f"{'recv/sent':>13}{'x raw p50':>11}{'svc us/msg':>12}{'other load':>12}"
)


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else (f"{value:.2f}" if value < 100 else f"{value:.0f}")


def table_row(result: Result, raw_p50: float | None) -> str:
    ratio = "-" if raw_p50 is None or math.isnan(result.p50) else f"{result.p50 / raw_p50:.1f}"
    service, other = "-", "-"
    if result.cpu is not None and result.sent:
        used = [v for k, v in result.cpu.seconds.items() if k.startswith("persistence")]
        if result.label.startswith(("stored", "sustained", "first miss", "blast")) and used:
            service = f"{sum(used) / result.sent * 1e6:.0f}"
        other = f"{result.cpu.other_cores:.1f} cpu"
    return (
        f"{result.label:<34}{result.rate:>8}{_ms(result.p50):>9}{_ms(result.p99):>9}"
        f"{_ms(result.max):>9}{f'{result.received}/{result.sent}':>13}{ratio:>11}"
        f"{service:>12}{other:>12}"
    )


def anchor_rows() -> list[str]:
    def row(label: str, rate: str, p50: str, p99: str = "-") -> str:
        return f"{label:<34}{rate:>8}{p50:>9}{p99:>9}{'-':>9}{'-':>13}{'-':>11}{'':>24}"

    rows = [
        row(f"anchor: raw hop {t} (notes)", "500", f"{v:.2f}", "0.7-1.2")
        for t, v in ANCHOR_RAW_P50_MS.items()
    ]
    rows += [
        row("anchor: socket.io relay (notes)", str(r), f"{p50:.2f}", f"{p99:.1f}")
        for r, (p50, p99) in ANCHOR_SOCKETIO_RELAY_MS.items()
    ]
    rows += [
        row("anchor: socket.io+pg (notes)", str(r), f"{v:.2f}")
        for r, v in ANCHOR_SOCKETIO_PG_P50_MS.items()
    ]
    rows.append(row("anchor: socket.io+pg saturates", f"<{ANCHOR_SOCKETIO_PG_SATURATION}/s", "-"))
    rows.append(row("anchor: polling 1.5 s (mean)", "-", f"{ANCHOR_POLLING_WAIT_MS:.0f}"))
    return rows


# --- side by side: the floor, a plain Socket.IO relay, and the full path -----------------

SIDE_BY_SIDE_TITLE = (
    "side by side, this run (p50 / p99 ms): raw broker hop, Socket.IO 4 relay storing "
    "nothing, our full path (stored, then delivered); ratios: full path over each"
)
SIDE_BY_SIDE_HEADER = (
    f"{'rate':>6}  {'raw hop':<18}{'socket.io relay':<18}{'full path':<30}"
    f"{'full / raw':<18}{'full / socket.io'}"
)


def _pair(result: Result | None) -> str:
    return "-" if result is None else f"{_ms(result.p50)} / {_ms(result.p99)}"


def _ratios(path: Result | None, base: Result | None) -> str:
    if path is None or base is None or not base.latencies_ms or not path.latencies_ms:
        return "-"

    def ratio(value: float) -> str:
        return f"{value:.1f}" if value < 100 else f"{value:.0f}"

    return f"{ratio(path.p50 / base.p50)} / {ratio(path.p99 / base.p99)}"


def side_by_side(
    raw: Sequence[Result],
    relay: Sequence[Result],
    full: Sequence[Result],
    transport: str,
    rates: Sequence[int],
) -> list[str]:
    """One line per rate and database: each path's p50 / p99 at the same offered
    rate, and the full path's ratios over the raw hop (on the devices' transport)
    and over the live Socket.IO relay. A part that was skipped or failed shows `-`."""

    def at(results: Sequence[Result], rate: int, label: str) -> list[Result]:
        return [r for r in results if r.rate_value == rate and r.label.startswith(label)]

    lines = [SIDE_BY_SIDE_TITLE, SIDE_BY_SIDE_HEADER, "-" * len(SIDE_BY_SIDE_HEADER)]
    for rate in rates:
        floor = next(iter(at(raw, rate, f"raw hop ({transport})")), None)
        socketio = next(iter(at(relay, rate, "socket.io relay")), None)
        paths: list[Result | None] = [*at(full, rate, "stored+delivered")] or [None]
        for path in paths:
            stored = "-"
            if path is not None:
                stored = f"{path.label.removeprefix('stored+delivered '):<11}{_pair(path)}"
            lines.append(
                f"{rate:>6}  {_pair(floor):<18}{_pair(socketio):<18}{stored:<30}"
                f"{_ratios(path, floor):<18}{_ratios(path, socketio)}"
            )
    lines += [
        f"raw hop: service account to service account over {transport}, no service in the "
        "path; socket.io relay: python-socketio clients over WebSocket through a Node",
        "Socket.IO 4 room relay (tools/socketio_relay); full path: device to device through "
        f"the persistence service, devices over {transport}. Same 150-byte body, open-loop",
        "pacing and message count for all three; both ends of every path in this one process.",
    ]
    return lines
