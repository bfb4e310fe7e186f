"""A whole run: a private PostgreSQL, the system on free loopback ports, users
and devices through the API, the connections, the load phase, the faults, the
tables. Everything started here is stopped here, on success, failure, Ctrl-C
or SIGTERM (the holders also exit when this process dies: their stdin closes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import psutil  # type: ignore[import-untyped]

from tools.bench_support import percentile
from tools.expo_double import ExpoDouble
from tools.loadtest.api import ApiClients
from tools.loadtest.faults import all_faults
from tools.loadtest.holders import raise_open_file_limit
from tools.loadtest.ledger import Ledger
from tools.loadtest.options import Options, parse_args
from tools.loadtest.phases import Runner, Timing
from tools.loadtest.pool import HolderPool
from tools.loadtest.postgres import PrivatePostgres, private_postgres
from tools.loadtest.provision import PROVISIONING_TIMEOUT_SECONDS, Population, Provisioner
from tools.loadtest.report import Connections, Provisioning, Report, render
from tools.loadtest.traffic import SEND_TIMEOUT_SECONDS, Traffic
from tools.loadtest.usage import CpuMeter, LoopLag, memory, peak
from tools.stack import GATEWAY, Stack, StackConfig

SAMPLE_SECONDS = 5.0  # memory samples during the load phase
HOLDERS_READY_TIMEOUT = 1800.0  # connecting 10,000 took minutes on a busy 2-core machine
# Limits meant for abusive clients, not for a load generator on one address
# whose users each send a few messages a second.
GENEROUS_LIMITS = {
    "MESSAGE_RATE_PER_SECOND": "100000",
    "MESSAGE_RATE_BURST": "100000",
    "REGISTRATIONS_PER_HOUR": "10000000",
    "LOGIN_ATTEMPTS_PER_MINUTE": "10000000",
}


def machine() -> str:
    """What the figures were measured on; the load average shows other people's work."""
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return f"{os.cpu_count()} cpus, loopback, load average {load} at the start"


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


class Suite:
    def __init__(self, options: Options, stack: Stack, postgres: PrivatePostgres) -> None:
        self.options = options
        self.stack = stack
        self.postgres = postgres
        self.report = Report(machine=machine())

    def pids(self, pool: HolderPool | None = None) -> dict[str, int]:
        found = {name: process.pid for name, process in self.stack.processes.items()}
        # The gateway's workers hold its connections: counted as the gateway.
        gateway = self.stack.processes.get(GATEWAY)
        if gateway is not None:
            with contextlib.suppress(psutil.Error):
                for worker in psutil.Process(gateway.pid).children():
                    found[f"{GATEWAY}/{worker.pid}"] = worker.pid
        found["loadtest"] = os.getpid()
        if pool is not None:
            found.update(pool.pids)
        return found

    async def run(self) -> Report:
        options = self.options
        say(f"provisioning {options.connections} devices through the API")
        api = ApiClients(self.stack.config.api_url, PROVISIONING_TIMEOUT_SECONDS)
        try:
            population = await Provisioner(api).populate(
                options.connections,
                options.pairs,
                options.http_lanes,
                options.devices_per_user,
                say,
            )
        finally:
            await api.aclose()
        self.report.provisioning = Provisioning(
            population.users,
            population.connections,
            population.register_seconds,
            population.devices_seconds,
        )
        say(
            f"provisioned {population.users} users in {population.register_seconds:.0f} s, "
            f"{population.connections} devices in {population.devices_seconds:.0f} s"
        )
        self.report.memory_before = memory(self.pids(), self.postgres.postmaster_pid())
        ledger = Ledger(f"lt{secrets.token_hex(2)}")
        say(f"connecting {population.connections} devices over WebSocket")
        started = time.perf_counter()
        async with HolderPool(
            population.held, options.client_processes, self.stack.log_dir
        ) as pool:
            ready = await pool.wait_ready(HOLDERS_READY_TIMEOUT)
            api = ApiClients(self.stack.config.api_url, SEND_TIMEOUT_SECONDS)
            traffic = Traffic(population.lanes, api, ledger, options.rate, options.http_share)
            async with contextlib.aclosing(api), traffic:
                self._connected(population, pool, traffic, time.perf_counter() - started, ready)
                runner = Runner(
                    traffic,
                    ledger,
                    pool,
                    self.postgres.url,
                    Timing(
                        options.before_seconds,
                        options.after_seconds,
                        options.recovery_timeout,
                        options.settle_seconds,
                        options.settle_max_seconds,
                    ),
                    say,
                )
                await self._load(runner, pool)
                await self._faults(runner)
                await self._recount(runner)
            say("closing the connections")
        return self.report

    def _connected(
        self, population: Population, pool: HolderPool, traffic: Traffic, seconds: float,
        ready: bool,
    ) -> None:  # fmt: skip
        established = pool.connected + len(traffic.clients)
        failed = population.connections - established
        self.report.connections = Connections(population.connections, established, failed, seconds)
        if not ready:
            self.report.notes.append(
                f"connecting gave up after {HOLDERS_READY_TIMEOUT:.0f} s: "
                f"{pool.connected} of {pool.total} held connections up"
            )
        say(f"{established} of {population.connections} connected in {seconds:.1f} s")

    async def _recount(self, runner: Runner) -> None:
        say("final count: waiting for stragglers of every phase")
        report = self.report
        assert report.load is not None
        results = [report.load, *report.faults]
        seconds = await runner.recount(results)
        report.load, report.faults = results[0], results[1:]
        report.final_settle_seconds = seconds

    async def _faults(self, runner: Runner) -> None:
        options = self.options
        faults = all_faults(
            self.stack, self.postgres, options.down_seconds, options.pg_outage_seconds
        )
        for name in options.faults:
            result = await runner.fault(faults[name])
            recovery = result.recovery_seconds
            say(
                f"{name}: {result.sent} sent, {result.lost} lost, {result.duplicates} "
                f"duplicates, recovery {'never' if recovery is None else f'{recovery:.2f} s'}"
            )
            self.report.faults.append(result)

    async def _load(self, runner: Runner, pool: HolderPool) -> None:
        options = self.options
        say(f"load phase: {options.rate:g} msg/s for {options.duration:g} s")
        samples: list[dict[str, int]] = []
        meter = CpuMeter.start(self.pids(pool), self.postgres.postmaster_pid())

        async def sample_memory() -> None:
            while True:
                samples.append(memory(self.pids(pool), self.postgres.postmaster_pid()))
                await asyncio.sleep(SAMPLE_SECONDS)

        async def sample_during_load() -> None:
            lag = LoopLag()
            samplers = [
                asyncio.create_task(sample_memory(), name="memory-sampler"),
                asyncio.create_task(lag.run(), name="loop-lag"),
            ]
            try:
                await asyncio.sleep(options.duration)
            finally:
                for sampler in samplers:
                    sampler.cancel()
                await asyncio.gather(*samplers, return_exceptions=True)
                self.report.cpu_under_load = meter.stop()
                self.report.generator_lag_p99_ms = percentile(lag.samples_ms, 99)
                self.report.generator_lag_max_ms = max(lag.samples_ms, default=math.nan)

        self.report.load = await runner.steady("load", options.duration, sample_during_load)
        self.report.memory_under_load = peak(samples)
        load = self.report.load
        say(
            f"load: p50 {load.p50_ms:.1f} ms, p99 {load.p99_ms:.1f} ms, "
            f"{load.lost} lost, {load.duplicates} duplicates"
        )


def _stack(
    run_dir: Path, database_url: str, expo_url: str, options: Options, open_files: int
) -> Stack:
    # Enough gateway processes that each holds its share (two descriptors a
    # connection) within the open-file limit.
    workers = max(1, math.ceil(2 * options.connections / max(1, open_files - 1000)))
    return Stack(
        StackConfig(
            data_dir=run_dir,
            database_url=database_url,
            persistence_instances=options.persistence_instances,
            gateway_workers=workers,
            log_level="WARNING",
            extra_env={**GENEROUS_LIMITS, "EXPO_API_URL": expo_url},
        )
    )


def _on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # the same clean-up path as Ctrl-C


def _log_to(path: Path) -> None:
    """Warnings of the clients (reconnects, re-sends, failed catch-ups) go to a
    file beside the system's logs, not between the progress lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        filename=path,
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    # Before anything starts: the broker and the WebSocket gateway inherit the
    # limit (the gateway holds two descriptors a connection: WebSocket and TCP).
    wanted = 2 * options.connections + 1000
    limit = raise_open_file_limit(wanted)
    if limit < options.connections + 1000:
        say(f"warning: open-file limit {limit} is low for {options.connections} connections")
    run_dir = Path(tempfile.mkdtemp(prefix="chat-load-"))
    _log_to(run_dir / "logs" / "loadtest.log")
    report: Report | None = None
    try:
        with contextlib.ExitStack() as exits:
            say(f"starting PostgreSQL and the system (logs in {run_dir / 'logs'})")
            postgres = exits.enter_context(private_postgres())
            expo = exits.enter_context(ExpoDouble())
            stack = _stack(run_dir, postgres.url, expo.url, options, limit)
            exits.callback(stack.stop)
            stack.start()
            suite = Suite(options, stack, postgres)
            report = asyncio.run(_bounded(suite, options.time_limit))
    except (KeyboardInterrupt, Interrupted):
        say("interrupted: everything started was stopped")
        return 130
    except TimeoutError:
        say(f"time limit of {options.time_limit:g} s reached: everything started was stopped")
        return 2
    finally:
        keep = options.keep or report is None or not report.clean
        if keep:
            say(f"logs kept in {run_dir / 'logs'}")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)
    print(render(report), flush=True)
    if options.json_path is not None:
        report.write_json(options.json_path)
    return 0 if report.clean else 1


class Interrupted(Exception):
    """SIGTERM arrived while the run was going on."""


async def _bounded(suite: Suite, limit: float) -> Report:
    """The run, within the time limit; SIGTERM cancels it (and so cleans up)."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    terminated = False

    def terminate() -> None:
        nonlocal terminated
        terminated = True
        task.cancel()

    loop.add_signal_handler(signal.SIGTERM, terminate)
    try:
        async with asyncio.timeout(limit):
            return await suite.run()
    except BaseException as error:
        # Whatever a cancelled step raised on its way out (a database driver
        # may turn the cancellation into its own error), this was SIGTERM.
        if terminated:
            raise Interrupted from error
        raise
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


if __name__ == "__main__":
    sys.exit(main())
