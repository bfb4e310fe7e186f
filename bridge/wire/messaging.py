"""Messaging payloads: sends, read receipts, typing, stored messages and acks."""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator
from pydantic_core import PydanticCustomError

from bridge.wire.base import MAX_TEXT_CHARS, Id, Text, WireModel

MessageKind = Literal["text", "image", "audio", "file"]
AckStatus = Literal["stored", "duplicate", "rejected"]
REJECTION_CODES = frozenset(
    {
        "not_member",
        "unknown_conversation",
        "invalid_payload",
        "too_large",
        "unknown_media",
        "rate_limited",
    }
)


# --- up (client -> service) ---------------------------------------------------------


class SendMessage(WireModel):
    """`conv/{conv_id}/msg/{user_id}`; also the body of the HTTP send."""

    client_msg_id: Id
    kind: MessageKind
    text: Text | None = None
    media_id: Id | None = None
    reply_to: Id | None = None

    @model_validator(mode="after")
    def _kind_rules(self) -> SendMessage:
        if self.text is not None:
            if len(self.text) > MAX_TEXT_CHARS:
                raise PydanticCustomError(
                    "too_large", "text is longer than {limit} characters", {"limit": MAX_TEXT_CHARS}
                )
            if not self.text.strip():
                raise PydanticCustomError("empty_text", "text is empty")
        if self.kind == "text":
            if self.text is None:
                raise PydanticCustomError("missing_text", "a text message needs `text`")
            if self.media_id is not None:
                raise PydanticCustomError("unexpected_media", "a text message has no `media_id`")
        elif self.media_id is None:
            raise PydanticCustomError("missing_media", "this kind of message needs `media_id`")
        return self


class ReadUp(WireModel):
    """`conv/{conv_id}/read/{user_id}`: I have read everything up to `seq`."""

    seq: int


class TypingUp(WireModel):
    """`conv/{conv_id}/typing/{user_id}` (QoS 0, never stored)."""

    typing: bool


# --- down (service -> client) --------------------------------------------------------


class MediaInfo(WireModel):
    media_id: str
    mime: str
    size: int
    url: str
    name: str
    # Extensions (docs/protocol.md): present where cheap to know.
    width: int | None = None
    height: int | None = None
    duration_ms: int | None = None


class StoredMessage(WireModel):
    """`user/{uid}/conv/{conv_id}/msg`: a committed message."""

    id: str
    conv_id: str
    seq: int
    sender_id: str
    kind: MessageKind
    text: str | None
    media: MediaInfo | None
    reply_to: str | None
    client_msg_id: str
    created_at: str


class ErrorInfo(WireModel):
    code: str
    message: str


class Ack(WireModel):
    """`user/{uid}/ack`: exactly one per MQTT send."""

    client_msg_id: str | None
    conv_id: str
    status: AckStatus
    id: str | None = None
    seq: int | None = None
    error: ErrorInfo | None = None


class ReadEvent(WireModel):
    """`user/{uid}/conv/{conv_id}/read`."""

    user_id: str
    seq: int


class TypingEvent(WireModel):
    """`user/{uid}/conv/{conv_id}/typing`."""

    user_id: str
    typing: bool


class PushCandidate(WireModel):
    """`push/message` (services only): a stored message, and who may need a push
    for it: the members away when it was stored (persistence reads them with the
    store), or, where that was not looked up (a re-delivery), every member but
    the sender. The push service decides again who is offline."""

    message: StoredMessage
    recipients: list[str]
