"""Memory and CPU of the system's processes (psutil), by name.

Resident memory (RSS) per process; PostgreSQL is many processes sharing its
buffers, so its figure is the sum of their proportional set sizes (PSS: each
shared page counted once, split among its users), not of their RSS.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

# No type stubs for psutil in the project's dev dependencies.
import psutil  # type: ignore[import-untyped]

MIB = 1024 * 1024


def _rss(pid: int) -> int | None:
    with contextlib.suppress(psutil.Error):
        return int(psutil.Process(pid).memory_info().rss)
    return None


def _cpu_seconds(pid: int) -> float | None:
    with contextlib.suppress(psutil.Error):
        times = psutil.Process(pid).cpu_times()
        return float(times.user + times.system)
    return None


def postgres_pss(postmaster_pid: int) -> int | None:
    """PSS of the postmaster and all its children."""
    try:
        root = psutil.Process(postmaster_pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    total = 0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            total += int(process.memory_full_info().pss)
    return total


def memory(pids: dict[str, int], postmaster_pid: int | None) -> dict[str, int]:
    """{name: bytes} of the processes still alive; "postgresql" is PSS (see above).
    Names with a slash ("ws_gateway/123", a worker) count toward the part before it."""
    found: dict[str, int] = {}
    for name, pid in pids.items():
        if (rss := _rss(pid)) is not None:
            group = name.split("/", 1)[0]
            found[group] = found.get(group, 0) + rss
    if postmaster_pid is not None and (pss := postgres_pss(postmaster_pid)) is not None:
        found["postgresql"] = pss
    return found


@dataclass
class CpuMeter:
    """Cores each process kept busy between `start()` and `stop()`; PostgreSQL's
    processes (those alive at both ends) count as one, "postgresql"."""

    pids: dict[str, int]
    started: dict[str, float]
    wall: float

    @classmethod
    def start(cls, pids: dict[str, int], postmaster_pid: int | None = None) -> CpuMeter:
        named = dict(pids)
        if postmaster_pid is not None:
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(postmaster_pid)
                for process in [root, *root.children(recursive=True)]:
                    named[f"postgresql/{process.pid}"] = process.pid
        started = {name: s for name, pid in named.items() if (s := _cpu_seconds(pid)) is not None}
        return cls(named, started, time.perf_counter())

    def stop(self) -> dict[str, float]:
        elapsed = time.perf_counter() - self.wall
        cores: dict[str, float] = {}
        for name, before in self.started.items():
            after = _cpu_seconds(self.pids[name])
            if after is not None and elapsed > 0:
                group = name.split("/", 1)[0]
                cores[group] = cores.get(group, 0.0) + (after - before) / elapsed
        return cores


def peak(samples: list[dict[str, int]]) -> dict[str, int]:
    """The largest value each name reached over several samples."""
    highest: dict[str, int] = {}
    for sample in samples:
        for name, value in sample.items():
            highest[name] = max(highest.get(name, 0), value)
    return highest


class LoopLag:
    """How late this process's event loop wakes up: a timer due every 50 ms,
    and by how much it overshot. Latencies are stamped on this loop, so a lag
    here is added to them; a large one means the generator, not the system,
    set the figures."""

    INTERVAL = 0.05

    def __init__(self) -> None:
        self.samples_ms: list[float] = []

    async def run(self) -> None:
        while True:
            due = time.perf_counter() + self.INTERVAL
            await asyncio.sleep(self.INTERVAL)
            self.samples_ms.append(max(0.0, (time.perf_counter() - due) * 1000))
