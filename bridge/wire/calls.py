"""Call signaling payloads: the up-actions, the events, the retained call state,
and what the push service needs for a callee who is offline."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from bridge.wire.base import Id, WireModel

CallMedia = Literal["audio", "video"]
CallEventName = Literal[
    "ringing",
    "incoming",
    "accepted",
    "declined",
    "cancelled",
    "ended",
    "missed",
    "busy",
    "error",
    "recording",
]
# Why an `error` event refused an action (docs/protocol.md lists each).
ErrorReason = Literal[
    "invalid_payload",
    "unknown_callee",
    "self_call",
    "no_shared_conversation",
    "already_in_call",
    "call_id_taken",
    "unknown_call",
    "not_participant",
    "not_callee",
    "not_ringing",
    "not_live",
    "unknown_device",
    "not_active",
    "recording_unavailable",
    "already_recording",
    "not_recording",
]
RecordingStatus = Literal["requested", "starting", "active", "ending", "complete", "failed"]


# --- up (client -> callsig): `call/{call_id}/{action}/{user_id}` -----------------------


class InviteUp(WireModel):
    to: Id
    media: CallMedia


class AcceptUp(WireModel):
    device_id: Id


class RecordUp(WireModel):
    """`call/{call_id}/record/{user_id}` (an extension): start or stop recording."""

    recording: bool


class EmptyUp(WireModel):
    """decline and hangup carry nothing: the topic says who and what."""


# --- down (callsig -> client) -------------------------------------------------------------


class LiveKitJoin(WireModel):
    """Where and how this user joins the call's room."""

    url: str
    room: str
    token: str


class RecordingInfo(WireModel):
    status: RecordingStatus


class _Aliased(WireModel):
    # `from` is a Python keyword: the field is `from_`, on the wire `from`.
    model_config = ConfigDict(
        extra="forbid", strict=True, frozen=True, populate_by_name=True, serialize_by_alias=True
    )


class CallEvent(_Aliased):
    """`user/{uid}/call`. In an `error` event `from`, `to` and `media` are null
    when the refused payload did not say them."""

    event: CallEventName
    call_id: str
    from_: str | None = Field(alias="from")
    to: str | None
    media: CallMedia | None
    livekit: LiveKitJoin | None = None
    device_id: str | None = None
    reason: str | None = None
    # Extension: in `recording` events, the call's recording status.
    recording: RecordingInfo | None = None


class LiveCall(_Aliased):
    """One live call of the user, as the retained state shows it."""

    call_id: str
    from_: str = Field(alias="from")
    to: str
    media: CallMedia
    status: Literal["ringing", "active"]
    device_id: str | None
    livekit: LiveKitJoin


class CallState(WireModel):
    """`user/{uid}/call/current`, retained: the user's live calls (at most one),
    so a device that connects mid-call learns of it on subscribing."""

    calls: list[LiveCall]


# --- services -----------------------------------------------------------------------------


class PushCallNotice(_Aliased):
    """`push/call/{uid}`: what a push notification to an offline callee needs."""

    event: Literal["incoming", "cancelled", "missed"]
    call_id: str
    from_: str = Field(alias="from")
    from_name: str
    to: str
    media: CallMedia
    at: str
