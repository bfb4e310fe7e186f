"""What `ChatClient.events()` yields: small frozen dataclasses, one per kind."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from bridge.wire.calls import CallEvent, CallState
from bridge.wire.messaging import Ack, StoredMessage
from bridge.wire.presence import PresenceEvent
from bridge.wire.support import DeskEvent, QueueSnapshot, SupportEvent


@dataclass(frozen=True, slots=True)
class MessageEvent:
    """A stored message (live, from a gap fetch, or from `catch_up`).

    `received_at` is `time.perf_counter()` when the client emitted it, so a
    benchmark can subtract its own send-time stamp (same process, same clock).
    """

    message: StoredMessage
    received_at: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True, slots=True)
class ReadReceiptEvent:
    conv_id: str
    user_id: str
    seq: int


@dataclass(frozen=True, slots=True)
class TypingIndicator:
    conv_id: str
    user_id: str
    typing: bool


@dataclass(frozen=True, slots=True)
class AckEvent:
    """Every ack on the user's ack topic, including those for the user's other devices."""

    ack: Ack


@dataclass(frozen=True, slots=True)
class CallEventReceived:
    """An event on the user's call topic. A late `ringing`, `incoming` or
    `accepted` of a call that already ended on this client is dropped, so an
    ended call never rings again."""

    event: CallEvent
    received_at: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True, slots=True)
class CallStateChanged:
    """The user's live calls (retained: also on every connect)."""

    state: CallState


@dataclass(frozen=True, slots=True)
class PresenceChanged:
    """A conversation peer came online or went offline."""

    event: PresenceEvent


@dataclass(frozen=True, slots=True)
class SupportEventReceived:
    """A change of one of the user's support tickets. An event older (lower
    `version`) than one already seen for that ticket is dropped."""

    event: SupportEvent
    received_at: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True, slots=True)
class DeskEventReceived:
    """Operators: one of their chats was assigned, taken away, closed or escalated."""

    event: DeskEvent


@dataclass(frozen=True, slots=True)
class QueueChanged:
    """Operators who asked for it: the waiting queue (retained: also on connect)."""

    snapshot: QueueSnapshot


@dataclass(frozen=True, slots=True)
class OtherEvent:
    """Anything this library does not model."""

    topic: str
    payload: dict[str, Any]


Event = (
    MessageEvent
    | ReadReceiptEvent
    | TypingIndicator
    | AckEvent
    | CallEventReceived
    | CallStateChanged
    | PresenceChanged
    | SupportEventReceived
    | DeskEventReceived
    | QueueChanged
    | OtherEvent
)
