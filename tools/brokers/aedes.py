"""Aedes (npm), an MQTT broker on Node.js, started from `tools/brokers/aedes/`:
`aedes` is its latest release (1.x, `v1/`), `aedes-beta` its MQTT 5
pre-release (2.0 beta, `v2-beta/`); one script (`broker.mjs`) runs either.

The packages come from the npm registry (`npm ci` in the release's folder, run
by `ensure_installed` when they are missing). Aedes keeps users, ACLs and any
admin API out of the broker: they are JavaScript hooks an application writes,
so the access checks need a provisioning backend written for it.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from tools.broker import free_port
from tools.brokers.context import PROJECT_MAX_PACKET_SIZE, Target
from tools.brokers.devices import NO_BACKEND
from tools.brokers.process import (
    BrokerUnavailable,
    RunningBroker,
    spawn,
    stop,
    wait_for_ports,
)

HOST = "127.0.0.1"
APP_DIR = Path(__file__).resolve().parent / "aedes"
# Launcher name -> the folder holding that release's package.json and lock file.
RELEASES = {"aedes": APP_DIR / "v1", "aedes-beta": APP_DIR / "v2-beta"}
PROBE_USER = "svc"
NO_ACCESS_HOOKS = f"{NO_BACKEND} (aedes: users and ACLs are JavaScript hooks)"


def ensure_installed(packages_dir: Path) -> None:
    """`npm ci` from the lock file, if the packages are not there yet."""
    if (packages_dir / "node_modules" / "aedes" / "package.json").exists():
        return
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise BrokerUnavailable("Node.js and npm are needed: apt-get install nodejs npm")
    subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=packages_dir,
        check=True,
        timeout=300,
    )


def version(packages_dir: Path) -> str:
    manifest = packages_dir / "node_modules" / "aedes" / "package.json"
    return str(json.loads(manifest.read_text())["version"])


@contextmanager
def running_release(name: str, work_dir: Path) -> Iterator[RunningBroker]:
    packages_dir = RELEASES[name]
    ensure_installed(packages_dir)
    tcp_port, ws_port = free_port(), free_port()
    password = secrets.token_urlsafe(24)
    log_path = work_dir / f"{name}.log"
    process = spawn(
        ["node", str(APP_DIR / "broker.mjs")],
        log_path,
        env={
            "HOST": HOST,
            "MQTT_PORT": str(tcp_port),
            "WS_PORT": str(ws_port),
            "PROBE_USERNAME": PROBE_USER,
            "PROBE_PASSWORD": password,
            "PACKAGES_DIR": str(packages_dir),
            "MAX_PACKET_SIZE": str(PROJECT_MAX_PACKET_SIZE),
        },
    )
    try:
        wait_for_ports(process, HOST, [tcp_port, ws_port], log_path)
        target = Target(
            HOST, tcp_port, PROBE_USER, password, ws_port=ws_port, no_devices_reason=NO_ACCESS_HOOKS
        )
        yield RunningBroker(name, version(packages_dir), target, log_path)
    finally:
        stop(process)


def launcher(name: str) -> Callable[[Path], AbstractContextManager[RunningBroker]]:
    def running(work_dir: Path) -> AbstractContextManager[RunningBroker]:
        return running_release(name, work_dir)

    return running
