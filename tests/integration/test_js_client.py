"""The JavaScript client (clients/js) against the real system.

Node's own test runner runs clients/js/test/*.test.mjs with the shared stack's
addresses in its environment (and a supervisor account for the live-support
test); the client is type-checked and built first when its sources changed. A
failing node run fails this test with node's output.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tools.stack import PROJECT_DIR, Stack

JS_DIR = PROJECT_DIR / "clients" / "js"
NODE_TIMEOUT_SECONDS = 300


def _newest_mtime(*paths: Path) -> float:
    newest = 0.0
    for path in paths:
        files = path.rglob("*") if path.is_dir() else [path]
        newest = max([newest, *(f.stat().st_mtime for f in files if f.is_file())])
    return newest


def _text(output: str | bytes | None) -> str:
    # TimeoutExpired carries bytes even when the run asked for text.
    if isinstance(output, bytes):
        return output.decode("utf-8", "replace")
    return output or ""


def _run(command: list[str], timeout: float) -> None:
    try:
        done = subprocess.run(
            command,
            cwd=JS_DIR,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        output = f"{_text(exc.stdout)}\n{_text(exc.stderr)}"
        pytest.fail(f"{' '.join(command)} timed out:\n{output}", pytrace=False)
    if done.returncode != 0:
        pytest.fail(
            f"{' '.join(command)} failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}",
            pytrace=False,
        )


def _ensure_built() -> None:
    """`npm ci` when the lock file changed, then type-check and build when the
    sources did (what `./chat` does, for a direct pytest run)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("Node.js and npm are needed: run ./chat test (it installs them)")
    installed = JS_DIR / "node_modules" / ".package-lock.json"
    if not installed.exists() or (JS_DIR / "package-lock.json").stat().st_mtime > (
        installed.stat().st_mtime
    ):
        _run(["npm", "ci", "--no-audit", "--no-fund"], 300)
    built = JS_DIR / "dist" / "index.js"
    sources = _newest_mtime(
        JS_DIR / "src",
        JS_DIR / "tsconfig.json",
        JS_DIR / "package.json",
        JS_DIR / "package-lock.json",
    )
    if not built.exists() or sources > built.stat().st_mtime:
        _run(["npm", "run", "build"], 180)
    _run(["npm", "run", "check"], 180)


def _create_supervisor(stack: Stack) -> tuple[str, str]:
    """A supervisor account in the stack's database (what an admin does), so the
    JS tests can act as an operator. It stays `offline` unless a test changes it."""
    username = f"jssup_{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(16)
    command = [sys.executable, "-m", "tools.admin", "create-operator", "--supervisor"]
    command += ["--username", username, "--display-name", "JS Supervisor"]
    # One argument: a generated password may start with "-", which argparse
    # would take for an option if it came as a separate word.
    command += [f"--password={password}"]
    done = subprocess.run(
        command,
        cwd=PROJECT_DIR,
        env=stack.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"creating a supervisor failed:\n{done.stdout}\n{done.stderr}", pytrace=False)
    return username, password


@pytest.mark.timeout(NODE_TIMEOUT_SECONDS + 240)
def test_js_client_against_the_real_system(stack: Stack) -> None:
    _ensure_built()
    supervisor, supervisor_password = _create_supervisor(stack)
    test_files = sorted(str(p.relative_to(JS_DIR)) for p in (JS_DIR / "test").glob("*.test.mjs"))
    assert test_files, "no JavaScript tests found"
    env = {
        **os.environ,
        "CHAT_API_URL": stack.config.api_url,
        "CHAT_MQTT_WS_URL": f"ws://127.0.0.1:{stack.config.ws_port}/mqtt",
        "CHAT_SUPERVISOR_USERNAME": supervisor,
        "CHAT_SUPERVISOR_PASSWORD": supervisor_password,
        "NO_COLOR": "1",
    }
    # A session of its own, so a timeout ends node and everything it started
    # (its per-file processes, Chromium) at once.
    node = subprocess.Popen(
        ["node", "--test", "--test-reporter=spec", "--test-timeout=120000", *test_files],
        cwd=JS_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = node.communicate(timeout=NODE_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(node.pid, signal.SIGKILL)
        stdout, stderr = node.communicate()
        pytest.fail(f"node --test timed out:\n{stdout}\n{stderr}", pytrace=False)
    if node.returncode != 0:
        pytest.fail(
            f"node --test failed (exit {node.returncode}):\n{stdout}\n{stderr}",
            pytrace=False,
        )
