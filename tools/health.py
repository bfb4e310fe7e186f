"""Waiting for a freshly started process to answer its health check."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx

POLL_SECONDS = 0.05


def wait_healthy(
    process: subprocess.Popen[bytes], url: str, seconds: float, what: str, log_path: Path
) -> None:
    """Return once `url` answers 200; raise if `process` exits first or the
    time runs out (the process is then killed: nobody would stop it)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited; see {log_path}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(POLL_SECONDS)
    process.kill()
    raise RuntimeError(f"{what} did not become ready within {seconds:g} s; see {log_path}")
