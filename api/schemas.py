"""HTTP request and response bodies. Requests refuse unknown fields."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from bridge.wire.base import Id, Text
from bridge.wire.messaging import StoredMessage


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


Username = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{3,32}$")]
Password = Annotated[str, StringConstraints(min_length=8, max_length=128)]


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value.strip()


DisplayName = Annotated[Text, StringConstraints(max_length=100), AfterValidator(_not_blank)]
Title = Annotated[Text, StringConstraints(max_length=200), AfterValidator(_not_blank)]


class RegisterIn(Request):
    username: Username
    password: Password
    display_name: DisplayName


class LoginIn(Request):
    username: str = Field(max_length=64)
    password: str = Field(max_length=128)


class SessionOut(BaseModel):
    user_id: str
    access_token: str


# Expo's push tokens, `ExponentPushToken[...]`: the form Expo's server SDK sends to
# (it refuses the `ExpoPushToken[...]` spelling before sending).
PushToken = Annotated[
    str, StringConstraints(pattern=r"^ExponentPushToken\[[A-Za-z0-9_-]{1,200}\]$")
]


class DeviceIn(Request):
    platform: Literal["ios", "android", "web"]
    push_token: PushToken | None = None


class PushTokenIn(Request):
    # null: this device takes no more pushes.
    push_token: PushToken | None


class PushTokenOut(BaseModel):
    device_id: str
    push_token: str | None


class MqttCredentials(BaseModel):
    ws_url: str
    tcp_host: str
    tcp_port: int
    username: str
    password: str
    client_id: str


class DeviceOut(BaseModel):
    device_id: str
    mqtt: MqttCredentials


class ConversationIn(Request):
    member_ids: Annotated[list[Id], Field(min_length=1, max_length=256)]
    title: Title | None = None


class ConversationOut(BaseModel):
    conv_id: str
    kind: str
    member_ids: list[str]
    title: str | None
    created_at: str


class ConversationSummary(BaseModel):
    conv_id: str
    kind: str
    member_ids: list[str]
    title: str | None
    last_message: StoredMessage | None
    unread_count: int
    # Extensions: what a client needs to detect gaps and show its own progress.
    last_seq: int
    read_seq: int


class ConversationList(BaseModel):
    conversations: list[ConversationSummary]


class MessageList(BaseModel):
    messages: list[StoredMessage]


class SyncIn(Request):
    known: Annotated[dict[Id, Annotated[int, Field(ge=0)]], Field(max_length=10_000)] = {}
    limit: Annotated[int, Field(ge=1, le=200)] = 100


class SyncConversation(BaseModel):
    conv_id: str
    kind: str
    member_ids: list[str]
    title: str | None
    last_seq: int
    read_seq: int
    messages: list[StoredMessage]
    has_more: bool


class SyncOut(BaseModel):
    conversations: list[SyncConversation]


class MediaOut(BaseModel):
    media_id: str
    mime: str
    size: int
    url: str
    name: str
    kind: str
    width: int | None = None
    height: int | None = None
    duration_ms: int | None = None


class CallRecordingOut(BaseModel):
    status: str
    location: str | None


class CallOut(BaseModel):
    call_id: str
    direction: Literal["outgoing", "incoming"]
    peer_id: str
    conv_id: str
    media: Literal["audio", "video"]
    # ringing and active while live; missed, declined, cancelled, ended, busy after.
    status: str
    end_reason: str | None
    started_at: str
    answered_at: str | None
    ended_at: str | None
    duration_s: float | None
    seen: bool
    recording: CallRecordingOut | None


class CallList(BaseModel):
    calls: list[CallOut]
    # Missed incoming calls not yet marked seen: the app's badge.
    missed_unseen: int


class CallsSeenIn(Request):
    # Which calls to mark seen; all of the caller's missed calls when absent.
    call_ids: list[Id] | None = Field(default=None, max_length=500)


class MissedCount(BaseModel):
    missed_unseen: int


class PresenceOut(BaseModel):
    user_id: str
    online: bool
    # When the user was last online; null while online (or never seen).
    last_seen: str | None


class MuteIn(Request):
    muted: bool


class MuteOut(BaseModel):
    conv_id: str
    muted: bool


# --- live support (docs/support.md) ------------------------------------------------------

Subject = Annotated[Text, StringConstraints(max_length=200), AfterValidator(_not_blank)]


class TicketIn(Request):
    subject: Subject
    priority: Literal["low", "normal", "high", "urgent"]
    text: Annotated[Text, StringConstraints(min_length=1, max_length=4000)] | None = None


class TicketCreated(BaseModel):
    ticket_id: str
    conv_id: str
    status: str
    position: int | None


class TransferIn(Request):
    operator_id: Id | None


class RatingIn(Request):
    score: int = Field(ge=1, le=5)
    comment: Annotated[Text, StringConstraints(max_length=1000)] | None = None


class OperatorStatusIn(Request):
    status: Literal["online", "away", "offline"]


class OperatorIn(Request):
    username: Username
    password: Password
    display_name: DisplayName
    capacity: int | None = Field(default=None, ge=1, le=50)
    supervisor: bool = False


class OperatorPatch(Request):
    capacity: int = Field(ge=1, le=50)


class CannedReplyIn(Request):
    title: Annotated[Text, StringConstraints(max_length=100), AfterValidator(_not_blank)]
    text: Annotated[Text, StringConstraints(min_length=1, max_length=4000)]
    shared: bool = False
