"""A Socket.IO 4 relay measured the way the bench measures the system
(`python -m tools.bench`, the `socketio` part).

The relay (tools/socketio_relay/relay.mjs, Node, socket.io from the npm registry)
is the plain Socket.IO design of a chat: a room per conversation, each `send`
relayed to the room's other members, nothing stored. Sender and receiver are
python-socketio clients over WebSocket in this process, one pair per
conversation, with the full path's body, open-loop pacing, counts and rates, and
`time.perf_counter()` on both ends: so its figures sit beside the raw broker hop
and the full path on equal terms.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import socketio  # type: ignore[import-untyped]

from tools.bench_support import TEXT, Board, Phase, Result, measure_phase
from tools.stack import PROJECT_DIR

RELAY_DIR = PROJECT_DIR / "tools" / "socketio_relay"
READY_PREFIX = "socket.io relay listening on "
START_TIMEOUT_SECONDS = 15.0
STOP_TIMEOUT_SECONDS = 5.0
CONNECT_TIMEOUT_SECONDS = 10.0
LABEL = "socket.io relay (no storage)"


class RelayError(RuntimeError):
    """The relay could not be started, or refused a client."""


@dataclass(frozen=True)
class Relay:
    url: str  # http://127.0.0.1:<port>, what a Socket.IO client connects to
    pid: int


@dataclass(frozen=True)
class RelayLoad:
    """The bench's load, as for the raw hop and the full path."""

    rates: Sequence[int]
    messages: int
    pairs: int
    warmup: int
    drain_seconds: float


def installed_version() -> str:
    """The socket.io version `npm ci` installed for the relay (RelayError if none)."""
    manifest = RELAY_DIR / "node_modules" / "socket.io" / "package.json"
    if not manifest.is_file():
        raise RelayError(
            f"{RELAY_DIR} has no node_modules: run ./chat bench, or npm ci in that folder"
        )
    version: str = json.loads(manifest.read_text())["version"]
    return version


@contextlib.asynccontextmanager
async def running_relay() -> AsyncIterator[Relay]:
    """The relay on a free port of its choosing; stopped on the way out, whatever happened."""
    installed_version()
    try:
        process = await asyncio.create_subprocess_exec(
            "node",
            "relay.mjs",
            "0",
            cwd=RELAY_DIR,
            stdout=asyncio.subprocess.PIPE,
        )
    except FileNotFoundError as exc:
        raise RelayError("node is not installed: run ./chat bench (it installs it)") from exc
    try:
        yield Relay(await _listening_url(process), process.pid)
    finally:
        await _stop(process)


async def _listening_url(process: asyncio.subprocess.Process) -> str:
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT_SECONDS)
    except TimeoutError as exc:
        raise RelayError(f"the relay printed nothing in {START_TIMEOUT_SECONDS:.0f} s") from exc
    text = line.decode().strip()
    if not text.startswith(READY_PREFIX):
        code = await process.wait() if not text else process.returncode
        raise RelayError(f"the relay did not start (exit code {code}): {text!r}")
    return "http://" + text.removeprefix(READY_PREFIX)


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), STOP_TIMEOUT_SECONDS)
    except TimeoutError:
        process.kill()
        await process.wait()


async def relay_client(exits: contextlib.AsyncExitStack, relay: Relay) -> Any:
    """A connected python-socketio client (an untyped library: hence `Any`),
    disconnected when `exits` closes. WebSocket from the first request, like the
    relay; no reconnection, so a dropped connection shows up as losses; Ctrl-C
    left to the bench."""
    client = socketio.AsyncClient(reconnection=False, handle_sigint=False)
    await client.connect(relay.url, transports=["websocket"], wait_timeout=CONNECT_TIMEOUT_SECONDS)
    exits.push_async_callback(client.disconnect)
    return client


async def join(client: Any, conv_id: str) -> None:
    """Joins the conversation's room; returns once the relay acknowledged it."""
    joined = await client.call("join", conv_id, timeout=CONNECT_TIMEOUT_SECONDS)
    if joined is not True:
        raise RelayError(f"the relay refused to join {conv_id!r}: {joined!r}")


@dataclass(frozen=True)
class Room:
    """One conversation, as the sender sees it."""

    conv_id: str
    sender: Any  # socketio.AsyncClient


async def open_rooms(
    exits: contextlib.AsyncExitStack, relay: Relay, board: Board, pairs: int
) -> list[Room]:
    """`pairs` conversations, a sender and a receiver in each, the receivers
    stamping arrivals on `board`."""
    run = secrets.token_hex(3)

    def stamp(message: dict[str, Any]) -> None:
        now = time.perf_counter()  # first, as the MQTT receivers do
        if board.current is not None:
            board.current.mark_received(message["client_msg_id"], now)

    rooms = []
    for index in range(pairs):
        conv_id = f"bench-{run}-{index}"
        sender = await relay_client(exits, relay)
        receiver = await relay_client(exits, relay)
        receiver.on("send", stamp)
        await join(sender, conv_id)
        await join(receiver, conv_id)
        rooms.append(Room(conv_id, sender))
    return rooms


def send_round_robin(
    rooms: Sequence[Room], tasks: set[asyncio.Task[None]]
) -> Callable[[int, str], Callable[[], Awaitable[object]]]:
    """Message `index` goes to room `index % len(rooms)`. An emit is a coroutine
    (it queues the frame for the client's writer task), so each runs as a task;
    `tasks` holds them until they are done, and the phase awaits them all."""

    def prepare(index: int, client_msg_id: str) -> Callable[[], Awaitable[object]]:
        room = rooms[index % len(rooms)]
        payload = {
            "conv_id": room.conv_id,
            "client_msg_id": client_msg_id,
            "kind": "text",
            "text": TEXT,
        }

        def go() -> asyncio.Task[None]:
            task = asyncio.get_running_loop().create_task(room.sender.emit("send", payload))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            return task

        return go

    return prepare


async def measure_relay(load: RelayLoad) -> list[Result]:
    """Starts the relay, measures each paced rate after a warm-up, stops the relay."""
    tasks: set[asyncio.Task[None]] = set()
    async with running_relay() as relay, contextlib.AsyncExitStack() as exits:
        board = Board({"relay": relay.pid})
        prepare = send_round_robin(await open_rooms(exits, relay, board, load.pairs), tasks)
        try:
            warm_up = Phase("warm-up (discarded)", "-", 200, load.warmup, 5.0)
            await measure_phase(board, warm_up, prepare, "emits that failed")
            return [
                await measure_phase(
                    board,
                    Phase(LABEL, "ws", rate, load.messages, load.drain_seconds),
                    prepare,
                    "emits that failed",
                )
                for rate in load.rates
            ]
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def run_socketio(load: RelayLoad) -> list[Result]:
    print(
        f"== socket.io {installed_version()} relay (Node; stores nothing; {load.pairs} "
        "conversations, python-socketio clients over WebSocket)",
        flush=True,
    )
    return asyncio.run(measure_relay(load))
