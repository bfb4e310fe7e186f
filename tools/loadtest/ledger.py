"""What happened to every message the suite sent: when it was sent, whether
and how it was acknowledged, when the other member first received it.

A phase (the load phase, or one fault) owns the messages sent while it ran;
its client message ids carry the phase's tag, so the database can be asked
about exactly those afterwards.

Times are `time.perf_counter()` of this one process: senders and receivers
live here, so the clocks agree.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

Path = Literal["mqtt", "http"]  # how a message was sent (received over MQTT either way)
PATHS: tuple[Path, ...] = ("mqtt", "http")


@dataclass(slots=True)
class Sent:
    client_msg_id: str
    conv_id: str
    sender_id: str
    path: Path
    sent_at: float
    acked_at: float | None = None
    ack_status: str | None = None  # stored, duplicate, rejected:<code>, failed:<error>
    # Message ids the other member received for this send (more than one only
    # if the message was stored twice), and when the first arrived.
    delivered_ids: set[str] = field(default_factory=set)
    delivered_at: float | None = None

    @property
    def acknowledged(self) -> bool:
        """Acknowledged as stored: the system promised to keep it."""
        return self.ack_status in ("stored", "duplicate")

    @property
    def settled(self) -> bool:
        """Nothing more to wait for: refused, or acknowledged and delivered."""
        if self.ack_status is None:
            return False
        return not self.acknowledged or self.delivered_at is not None

    @property
    def ack_ms(self) -> float | None:
        if self.acked_at is None or not self.acknowledged:
            return None
        return (self.acked_at - self.sent_at) * 1000

    @property
    def latency_ms(self) -> float | None:
        if self.delivered_at is None:
            return None
        return (self.delivered_at - self.sent_at) * 1000


class Phase:
    """The messages of one phase, by client message id."""

    def __init__(self, name: str, tag: str) -> None:
        self.name = name
        self.tag = tag
        self.sends: dict[str, Sent] = {}
        self.traffic_seconds = 0.0  # how long its traffic ran
        # Client message ids still unsettled when the phase closed.
        self.unsettled_when_closed: set[str] = set()
        self._numbers = itertools.count()

    def next_client_msg_id(self) -> str:
        return f"{self.tag}-{next(self._numbers)}"

    def record(self, sent: Sent) -> None:
        self.sends[sent.client_msg_id] = sent

    def unsettled(self) -> int:
        return sum(1 for s in self.sends.values() if not s.settled)


class FreshWatch:
    """Waits for messages sent at or after `since` to arrive, one on each path:
    the moment the system works end to end again after a fault."""

    def __init__(self, since: float, paths: tuple[Path, ...]) -> None:
        self.since = since
        self.paths = paths
        self.first: dict[Path, float] = {}
        self.done = asyncio.Event()

    def saw(self, sent: Sent, at: float) -> None:
        if sent.sent_at >= self.since and sent.path in self.paths and sent.path not in self.first:
            self.first[sent.path] = at
            if len(self.first) == len(self.paths):
                self.done.set()

    @property
    def last_path_at(self) -> float:
        return max(self.first.values())


class Ledger:
    """Every phase of a run; receivers report arrivals here by client message id."""

    def __init__(self, run_tag: str) -> None:
        self.run_tag = run_tag
        self.phases: list[Phase] = []
        self._by_id: dict[str, Sent] = {}
        self._watches: list[FreshWatch] = []
        # Acks and first arrivals so far: settling waits while this still moves.
        self.progress = 0

    @contextlib.contextmanager
    def watch(self, since: float, paths: tuple[Path, ...]) -> Iterator[FreshWatch]:
        watch = FreshWatch(since, paths)
        self._watches.append(watch)
        try:
            yield watch
        finally:
            self._watches.remove(watch)

    def open_phase(self, name: str) -> Phase:
        phase = Phase(name, f"{self.run_tag}{len(self.phases)}")
        self.phases.append(phase)
        return phase

    def sent(self, phase: Phase, sent: Sent) -> None:
        phase.record(sent)
        self._by_id[sent.client_msg_id] = sent

    def acked(self, client_msg_id: str, status: str) -> None:
        sent = self._by_id[client_msg_id]
        if sent.ack_status is None or not sent.acknowledged:
            sent.ack_status = status
            sent.acked_at = time.perf_counter()
            self.progress += 1

    def delivered(self, client_msg_id: str, message_id: str, sender_id: str, at: float) -> None:
        """The other member received a stored message (any number of times)."""
        sent = self._by_id.get(client_msg_id)
        if sent is None or sent.sender_id != sender_id:
            return  # not one of ours (an earlier run's, or another sender's id)
        sent.delivered_ids.add(message_id)
        if sent.delivered_at is None:
            sent.delivered_at = at
            self.progress += 1
            for watch in self._watches:
                watch.saw(sent, at)
