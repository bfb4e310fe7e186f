"""The worker processes that hold the idle connections (tools/loadtest/holders.py).

Why separate processes: each held connection costs its event loop a wake-up a
second (bridge.mqtt's keepalive timer), about 0.4 of a core for 10,000 here,
and connecting them is CPU-bound in Python. In worker processes that work
neither slows the measuring process (whose clock times every message) nor
piles up on one core.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.loadtest.provision import HeldDevice
from tools.stack import PROJECT_DIR

CONNECT_CONCURRENCY = 32  # per worker; the TCP and WebSocket handshakes run in threads
STOP_TIMEOUT_SECONDS = 45.0


@dataclass
class WorkerStatus:
    connected: int = 0
    total: int = 0
    failed: int = 0
    reconnects: int = 0
    received: int = 0
    ready: bool = False


class HolderPool:
    """`async with HolderPool(devices, processes, log_dir) as pool:` starts the
    workers; `await pool.wait_ready()` waits until every connection was tried."""

    def __init__(self, devices: list[HeldDevice], processes: int, log_dir: Path) -> None:
        self.shares = [devices[i::processes] for i in range(processes)] if devices else []
        self.log_dir = log_dir
        self.workers: list[asyncio.subprocess.Process] = []
        self.status: list[WorkerStatus] = [WorkerStatus() for _ in self.shares]
        self.changed = asyncio.Event()
        self._readers: list[asyncio.Task[None]] = []

    @property
    def pids(self) -> dict[str, int]:
        return {f"holders-{i + 1}": w.pid for i, w in enumerate(self.workers)}

    @property
    def connected(self) -> int:
        return sum(s.connected for s in self.status)

    @property
    def total(self) -> int:
        return sum(len(share) for share in self.shares)

    @property
    def failed(self) -> int:
        return sum(s.failed for s in self.status)

    @property
    def reconnects(self) -> int:
        return sum(s.reconnects for s in self.status)

    async def __aenter__(self) -> HolderPool:
        try:
            await self._start_workers()
        except BaseException:
            await self.stop()
            raise
        return self

    async def _start_workers(self) -> None:
        for index, share in enumerate(self.shares):
            log = (self.log_dir / f"holders-{index + 1}.log").open("ab")
            worker = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tools.loadtest.holders",
                cwd=PROJECT_DIR,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                limit=1 << 20,
            )
            log.close()
            self.workers.append(worker)
            assert worker.stdin is not None
            devices = [
                {"user_id": held.user_id, **dataclasses.asdict(held.device)} for held in share
            ]
            config = {"devices": devices, "concurrency": CONNECT_CONCURRENCY}
            worker.stdin.write(json.dumps(config).encode() + b"\n")
            await worker.stdin.drain()
            self._readers.append(
                asyncio.create_task(self._read(index, worker), name=f"holders-{index + 1}")
            )

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    async def _read(self, index: int, worker: asyncio.subprocess.Process) -> None:
        assert worker.stdout is not None
        while line := await worker.stdout.readline():
            fields: dict[str, Any] = json.loads(line)
            self.status[index] = WorkerStatus(**fields)
            self.changed.set()
        self.changed.set()

    def _check_alive(self) -> None:
        for index, worker in enumerate(self.workers):
            if worker.returncode is not None:
                raise RuntimeError(
                    f"holders-{index + 1} exited ({worker.returncode}); "
                    f"see {self.log_dir / f'holders-{index + 1}.log'}"
                )

    async def wait_until(self, done: Callable[[HolderPool], bool], timeout: float) -> bool:
        """Wait until `done(pool)` holds (checked on every report); False on timeout."""
        deadline = time.monotonic() + timeout
        while not done(self):
            self._check_alive()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(remaining, 1.0))
        return True

    async def wait_ready(self, timeout: float) -> bool:
        return await self.wait_until(lambda p: all(s.ready for s in p.status), timeout)

    async def stop(self) -> None:
        """Close stdin (the workers close their connections and exit); kill any
        that does not exit in time."""
        for worker in self.workers:
            if worker.stdin is not None and not worker.stdin.is_closing():
                worker.stdin.close()
        for worker in self.workers:
            try:
                await asyncio.wait_for(worker.wait(), STOP_TIMEOUT_SECONDS)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    worker.kill()
                await worker.wait()
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
