"""Starting and stopping a broker process for a probe: free ports, a log file,
readiness by open ports, a clean stop (SIGTERM, then SIGKILL only if it hangs)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tools.brokers.context import Target

STOP_GRACE = 10.0


class BrokerUnavailable(Exception):
    """The broker is not installed here; the message says how to install it."""


class BrokerFailed(Exception):
    """The broker did not start (or answer) in time; the message quotes its log."""


@dataclass(frozen=True)
class RunningBroker:
    name: str
    version: str
    target: Target
    log_path: Path


def spawn(
    argv: Sequence[str],
    log_path: Path,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Its own session: a Ctrl-C meant for the probe does not kill the
            # broker before the probe stops it.
            start_new_session=True,
            env={**os.environ, **(env or {})},
            cwd=cwd,
        )


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def wait_for_ports(
    process: subprocess.Popen[bytes],
    host: str,
    ports: Sequence[int],
    log_path: Path,
    timeout: float = 30.0,
) -> None:
    deadline = time.monotonic() + timeout
    for port in ports:
        while not port_open(host, port):
            if process.poll() is not None:
                raise BrokerFailed(f"exited with {process.returncode}: {log_tail(log_path)}")
            if time.monotonic() > deadline:
                stop(process)
                raise BrokerFailed(f"port {port} not open in {timeout:.0f} s: {log_tail(log_path)}")
            time.sleep(0.05)


def stop(process: subprocess.Popen[bytes], grace: float = STOP_GRACE) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def log_tail(log_path: Path, lines: int = 15) -> str:
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def command_output(argv: Sequence[str]) -> str:
    """stdout and stderr of a short command (a version query), whatever its exit code."""
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=False)
    return (done.stdout + done.stderr).strip()
