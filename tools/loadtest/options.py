"""The command line of `python -m tools.loadtest` (flags documented in docs/load.md)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tools.loadtest.faults import FAULT_NAMES


@dataclass(frozen=True)
class Options:
    connections: int
    devices_per_user: int
    pairs: int
    http_lanes: int
    http_share: float
    rate: float
    duration: float
    client_processes: int
    faults: tuple[str, ...]
    before_seconds: float
    after_seconds: float
    down_seconds: float
    pg_outage_seconds: float
    settle_seconds: float
    settle_max_seconds: float
    recovery_timeout: float
    persistence_instances: int
    time_limit: float
    json_path: Path | None
    keep: bool


def _faults(text: str) -> tuple[str, ...]:
    if text in ("all", ""):
        return FAULT_NAMES if text == "all" else ()
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in FAULT_NAMES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown fault(s) {unknown}; choose from {', '.join(FAULT_NAMES)}"
        )
    return names


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m tools.loadtest",
        description="Hold many device connections with steady chat traffic, break parts "
        "of the system under it, and print what was sent, stored, delivered and lost.",
    )
    add = parser.add_argument
    add("--connections", type=int, default=10_000, help="MQTT-over-WebSocket device connections")
    add("--devices-per-user", type=int, default=10, help="devices of each idle user")
    add("--pairs", type=int, default=250, help="conversations carrying MQTT traffic both ways")
    add("--http-lanes", type=int, default=4, help="conversations with a sender on HTTP")
    add("--http-share", type=float, default=0.05, help="share of the sends made over HTTP")
    add("--rate", type=float, default=100.0, help="total messages per second")
    add("--duration", type=float, default=60.0, help="seconds of the load phase")
    add("--client-processes", type=int, default=2, help="worker processes holding connections")
    add(
        "--faults",
        type=_faults,
        default=FAULT_NAMES,
        help=f"comma list, 'all' or '' (none): {', '.join(FAULT_NAMES)}",
    )
    add("--before-seconds", type=float, default=3.0, help="traffic before each fault")
    add("--after-seconds", type=float, default=5.0, help="traffic after each fault's end")
    add("--down-seconds", type=float, default=2.0, help="how long a killed part stays down")
    add("--pg-outage-seconds", type=float, default=30.0, help="how long PostgreSQL is stopped")
    add(
        "--settle-seconds",
        type=float,
        default=30.0,
        help="stop waiting for acks and deliveries after this long without any",
    )
    add(
        "--settle-max-seconds",
        type=float,
        default=180.0,
        help="stop waiting for acks and deliveries after this long in any case",
    )
    add("--recovery-timeout", type=float, default=120.0, help="give up on recovery after this")
    add("--persistence-instances", type=int, default=1)
    add("--time-limit", type=float, default=7200.0, help="stop the whole run after this many s")
    add("--json", type=Path, default=None, dest="json_path", help="also write the figures here")
    add("--keep", action="store_true", help="keep the run's folder (logs) even when clean")
    args = parser.parse_args(argv)
    if args.rate <= 0 or not 0 <= args.http_share <= 1:
        parser.error("--rate must be positive and --http-share within 0..1")
    if args.pairs < 1 or args.http_lanes < 0 or args.devices_per_user < 1:
        parser.error("--pairs and --devices-per-user must be at least 1")
    if args.client_processes < 1:
        parser.error("--client-processes must be at least 1")
    return Options(
        connections=args.connections,
        devices_per_user=args.devices_per_user,
        pairs=args.pairs,
        http_lanes=args.http_lanes,
        http_share=args.http_share if args.http_lanes else 0.0,
        rate=args.rate,
        duration=args.duration,
        client_processes=args.client_processes,
        faults=args.faults,
        before_seconds=args.before_seconds,
        after_seconds=args.after_seconds,
        down_seconds=args.down_seconds,
        pg_outage_seconds=args.pg_outage_seconds,
        settle_seconds=args.settle_seconds,
        settle_max_seconds=args.settle_max_seconds,
        recovery_timeout=args.recovery_timeout,
        persistence_instances=args.persistence_instances,
        time_limit=args.time_limit,
        json_path=args.json_path,
        keep=args.keep,
    )
