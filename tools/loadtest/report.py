"""The printed tables (and the same figures as JSON)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.loadtest.phases import PhaseResult
from tools.loadtest.usage import MIB


@dataclass
class Connections:
    wanted: int
    established: int
    failed: int
    seconds: float  # from the first connect until every connection was tried


@dataclass
class Provisioning:
    users: int
    devices: int
    register_seconds: float
    devices_seconds: float


@dataclass
class Report:
    machine: str
    provisioning: Provisioning | None = None
    connections: Connections | None = None
    memory_before: dict[str, int] = field(default_factory=dict)
    memory_under_load: dict[str, int] = field(default_factory=dict)
    cpu_under_load: dict[str, float] = field(default_factory=dict)
    # How late the measuring process's event loop woke during the load phase.
    generator_lag_p99_ms: float = math.nan
    generator_lag_max_ms: float = math.nan
    final_settle_seconds: float = 0.0  # the last wait for stragglers before the recount
    load: PhaseResult | None = None
    faults: list[PhaseResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        phases = [*([self.load] if self.load else []), *self.faults]
        return all(p.clean for p in phases)

    def to_json(self) -> dict[str, Any]:
        document = dataclasses.asdict(self, dict_factory=_finite)
        document["clean"] = self.clean
        return document

    def write_json(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2, allow_nan=False, default=str))


def _finite(items: list[tuple[str, Any]]) -> dict[str, Any]:
    """JSON has no NaN: a figure that could not be measured is null."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in items}


def _load_average() -> str:
    return ", ".join(f"{value:.1f}" for value in os.getloadavg())


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1f}"


def _s(value: float | None, missing: str = "-") -> str:
    return missing if value is None else f"{value:.2f}"


def memory_table(report: Report) -> list[str]:
    names = sorted(set(report.memory_before) | set(report.memory_under_load))
    lines = [f"{'process':<18}{'RSS before MiB':>16}{'RSS load MiB':>14}{'CPU load':>10}"]
    for name in names:
        before = report.memory_before.get(name)
        under = report.memory_under_load.get(name)
        cpu = report.cpu_under_load.get(name)
        lines.append(
            f"{name:<18}"
            f"{'-' if before is None else f'{before / MIB:.0f}':>16}"
            f"{'-' if under is None else f'{under / MIB:.0f}':>14}"
            f"{'-' if cpu is None else f'{cpu:.2f}':>10}"
        )
    return lines


FAULT_HEADER = (
    f"{'fault':<22}{'tried':>7}{'sent':>7}{'stored':>8}{'delivered':>10}{'lost':>6}"
    f"{'dup':>5}{'unacked':>8}{'late':>6}{'restart s':>10}{'recovery s':>11}{'conns back s':>13}"
    f"{'drain s':>9}{'p50 ms':>9}"
)


LEGEND = (
    "sent = acknowledged as stored; lost = acknowledged but not stored, or stored but not "
    "delivered, at the end of the run; late = not yet acknowledged or delivered when the "
    "phase closed, but by the end of the run; restart = the part's start until it said it was up; "
    "recovery = fault end until a fresh message (MQTT and HTTP) reached the other member; "
    "conns back = every held connection up again (1 s resolution); drain = after the "
    "phase's traffic stopped, until every message was settled; p50 = the phase's latency, "
    "send -> other member, MQTT."
)


def fault_row(result: PhaseResult) -> str:
    reconnected = _s(result.reconnected_seconds, "NEVER") if result.drops_connections else "-"
    return (
        f"{result.name:<22}{result.tried:>7}{result.sent:>7}{result.stored:>8}"
        f"{result.delivered:>10}{result.lost:>6}{result.duplicates:>5}{result.unacked:>8}"
        f"{result.late:>6}"
        f"{_s(result.restart_seconds):>10}{_s(result.recovery_seconds, 'NEVER'):>11}"
        f"{reconnected:>13}{result.settle_seconds:>9.1f}{_ms(result.p50_ms):>9}"
    )


def render(report: Report) -> str:
    lines = [f"== load and fault suite ({report.machine})"]
    if report.provisioning:
        p = report.provisioning
        lines.append(
            f"provisioning: {p.users} users in {p.register_seconds:.0f} s, "
            f"{p.devices} devices in {p.devices_seconds:.0f} s"
        )
    if report.connections:
        c = report.connections
        lines.append(
            f"connections (MQTT over WebSocket): {c.established} of {c.wanted} established "
            f"in {c.seconds:.1f} s, {c.failed} failed"
        )
    if report.load:
        load = report.load
        lines.append(
            f"load phase: {load.tried} messages tried in {load.traffic_seconds:.1f} s, "
            f"{load.sent} acknowledged, {load.delivered} delivered, {load.lost} lost, "
            f"{load.duplicates} duplicates, {load.late} late; "
            f"latency send -> other member (MQTT) p50 {_ms(load.p50_ms)} ms, "
            f"p99 {_ms(load.p99_ms)} ms; send -> ack p50 {_ms(load.ack_p50_ms)} ms, "
            f"p99 {_ms(load.ack_p99_ms)} ms; drained {load.settle_seconds:.1f} s after"
        )
        lines.append(
            f"load generator's event loop: late by p99 {_ms(report.generator_lag_p99_ms)} ms, "
            f"max {_ms(report.generator_lag_max_ms)} ms (added to the latencies it measures)"
        )
    lines += ["", *memory_table(report)]
    if report.faults:
        lines += ["", FAULT_HEADER, "-" * len(FAULT_HEADER)]
        lines += [fault_row(result) for result in report.faults]
        lines += textwrap.wrap(LEGEND, len(FAULT_HEADER))
        lines += [f"{result.name}: {result.fault}" for result in report.faults]
    for result in [*([report.load] if report.load else []), *report.faults]:
        if result.refused:
            lines.append(f"note: {result.name}: not acknowledged as stored: {result.refused}")
        for detail in result.lost_detail:
            lines.append(f"lost in {result.name}: {detail}")
        if result.fault and result.recovery_seconds is None:
            lines.append(f"note: {result.name}: no fresh message made it end to end in time")
    lines.append(
        f"final count after waiting {report.final_settle_seconds:.1f} s more for stragglers"
    )
    lines += [f"note: {note}" for note in report.notes]
    lines.append(f"machine at the end: load average {_load_average()}")
    lines.append(
        "result: " + ("nothing lost, nothing stored twice" if report.clean else "FINDINGS above")
    )
    return "\n".join(lines)
