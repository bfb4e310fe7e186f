"""The bench's Socket.IO relay (tools/socketio_relay) and its bench part
(tools/bench_socketio.py), on the real relay in Node with python-socketio clients.

The relay's packages are installed with `npm ci` when missing or older than the
lock file (what `./chat` does, for a direct pytest run).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from typing import Any

import psutil
import pytest

from tools.bench_socketio import (
    LABEL,
    RELAY_DIR,
    RelayLoad,
    join,
    measure_relay,
    relay_client,
    running_relay,
)
from tools.bench_support import Result, side_by_side

pytestmark = pytest.mark.anyio

WAIT_SECONDS = 10.0


@pytest.fixture(scope="module", autouse=True)
def relay_installed() -> None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("Node.js and npm are needed: run ./chat test (it installs them)")
    installed = RELAY_DIR / "node_modules" / ".package-lock.json"
    lock = RELAY_DIR / "package-lock.json"
    if installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return
    done = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund"],
        cwd=RELAY_DIR,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"npm ci failed:\n{done.stdout}\n{done.stderr}", pytrace=False)


class Inbox:
    """What one client received, in order; `arrived` is set at `expected` messages."""

    def __init__(self, expected: int) -> None:
        self.messages: list[dict[str, Any]] = []
        self.expected = expected
        self.arrived = asyncio.Event()

    def __call__(self, message: dict[str, Any]) -> None:
        self.messages.append(message)
        if len(self.messages) >= self.expected:
            self.arrived.set()

    async def wait(self) -> list[dict[str, Any]]:
        await asyncio.wait_for(self.arrived.wait(), WAIT_SECONDS)
        return self.messages


def message(conv_id: str, client_msg_id: str) -> dict[str, str]:
    return {"conv_id": conv_id, "client_msg_id": client_msg_id, "kind": "text", "text": "hi"}


async def test_every_send_reaches_the_other_member_of_its_room_and_no_one_else() -> None:
    async with running_relay() as relay, contextlib.AsyncExitStack() as exits:
        sender, receiver, outsider = [await relay_client(exits, relay) for _ in range(3)]
        received, sender_got, outsider_got = Inbox(20), Inbox(1), Inbox(1)
        receiver.on("send", received)
        sender.on("send", sender_got)
        outsider.on("send", outsider_got)
        await join(sender, "conv-a")
        await join(receiver, "conv-a")
        await join(outsider, "conv-b")

        sent = [message("conv-a", f"m{index}") for index in range(20)]
        for each in sent:
            await sender.emit("send", each)
        assert await received.wait() == sent

        # The relay handles one connection's events in order and writes to each
        # socket in order: had it echoed a send to its sender or leaked one to
        # another room, that copy would arrive before these later messages.
        await receiver.emit("send", message("conv-a", "reply"))
        await sender.emit("send", message("conv-b", "elsewhere"))
        assert [m["client_msg_id"] for m in await sender_got.wait()] == ["reply"]
        assert [m["client_msg_id"] for m in await outsider_got.wait()] == ["elsewhere"]


def relays_running() -> list[psutil.Process]:
    """Node processes of this test run that run the relay (a shared stack's
    WebSocket gateway is Node too)."""
    return [
        p
        for p in psutil.Process().children(recursive=True)
        if p.name() == "node" and any("relay" in part for part in p.cmdline())
    ]


async def test_the_bench_part_measures_every_message_and_stops_the_relay() -> None:
    load = RelayLoad(rates=(200,), messages=20, pairs=2, warmup=10, drain_seconds=WAIT_SECONDS)
    results = await measure_relay(load)

    [result] = results
    assert (result.sent, result.received, result.lost) == (20, 20, 0)
    assert len(result.latencies_ms) == 20
    assert result.rate_value == 200
    assert result.cpu is not None and "relay" in result.cpu.seconds
    assert not result.notes
    assert not relays_running()


async def test_the_relay_is_stopped_when_the_run_fails() -> None:
    with pytest.raises(RuntimeError, match="the run failed"):
        async with running_relay() as relay:
            node = psutil.Process(relay.pid)
            assert node.is_running()
            raise RuntimeError("the run failed")
    assert not node.is_running()


def measured(label: str, rate: int, latencies_ms: list[float]) -> Result:
    result = Result(label, str(rate), len(latencies_ms), latencies_ms, len(latencies_ms))
    result.rate_value = rate
    return result


def test_the_side_by_side_ratios_use_the_figures_of_this_run() -> None:
    raw = [measured("raw hop (ws)", 100, [1.0, 2.0]), measured("raw hop (tcp)", 100, [9.0])]
    relay = [measured(LABEL, 100, [2.0, 8.0])]
    full = [measured("stored+delivered sqlite", 100, [4.0, 16.0])]

    lines = side_by_side(raw, relay, full, "ws", [100, 500])

    rows = {line.split()[0]: " ".join(line.split()) for line in lines if line[:6].strip()}
    # raw hop (ws, not tcp), relay, full path, then full over raw and over the relay
    assert rows["100"] == "100 1.00 / 2.00 2.00 / 8.00 sqlite 4.00 / 16.00 4.0 / 8.0 2.0 / 2.0"
    assert rows["500"] == "500 - - - - -"
