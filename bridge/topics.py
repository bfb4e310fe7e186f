"""Every topic string is built and parsed here, and nowhere else.

Up-topics end with the publishing user's id: the broker's ACL only lets a user
publish where that last level is its own id, so a parsed `user_id` is proven.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from core.ids import is_valid_id


class UpKind(StrEnum):
    MSG = "msg"
    READ = "read"
    TYPING = "typing"


class CallAction(StrEnum):
    INVITE = "invite"
    ACCEPT = "accept"
    DECLINE = "decline"
    HANGUP = "hangup"
    RECORD = "record"


# --- up-topics (clients publish) -------------------------------------------------


def conv_up(conv_id: str, kind: UpKind, user_id: str) -> str:
    return f"conv/{conv_id}/{kind.value}/{user_id}"


def conv_up_filter(kind: UpKind) -> str:
    return f"conv/+/{kind.value}/+"


def call_up(call_id: str, action: CallAction, user_id: str) -> str:
    return f"call/{call_id}/{action.value}/{user_id}"


def call_up_any(user_id: str) -> str:
    """Every call action by this user (an ACL pattern)."""
    return f"call/+/+/{user_id}"


def call_up_filter() -> str:
    return "call/+/+/+"


@dataclass(frozen=True, slots=True)
class CallUp:
    call_id: str
    action: CallAction
    user_id: str


def parse_call_up(topic: str) -> CallUp | None:
    """`call/<call_id>/<action>/<user_id>` or None when it is not one."""
    parts = topic.split("/")
    if len(parts) != 4 or parts[0] != "call":
        return None
    try:
        action = CallAction(parts[2])
    except ValueError:
        return None
    return CallUp(call_id=parts[1], action=action, user_id=parts[3])


def presence(user_id: str, device_id: str) -> str:
    return f"presence/{user_id}/{device_id}"


def presence_filter() -> str:
    return "presence/+/+"


@dataclass(frozen=True, slots=True)
class PresenceUp:
    user_id: str
    device_id: str


def parse_presence(topic: str) -> PresenceUp | None:
    """`presence/<user_id>/<device_id>` or None when it is not one."""
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != "presence":
        return None
    return PresenceUp(user_id=parts[1], device_id=parts[2])


@dataclass(frozen=True, slots=True)
class ConvUp:
    conv_id: str
    kind: UpKind
    user_id: str


def parse_conv_up(topic: str) -> ConvUp | None:
    """`conv/<conv_id>/<kind>/<user_id>` or None when it is not one."""
    parts = topic.split("/")
    if len(parts) != 4 or parts[0] != "conv":
        return None
    try:
        kind = UpKind(parts[2])
    except ValueError:
        return None
    return ConvUp(conv_id=parts[1], kind=kind, user_id=parts[3])


# --- down-topics (clients subscribe to user/<own id>/#) ---------------------------


def user_root(user_id: str) -> str:
    return f"user/{user_id}/#"


def user_conv(user_id: str, conv_id: str, kind: UpKind) -> str:
    return f"user/{user_id}/conv/{conv_id}/{kind.value}"


def user_ack(user_id: str) -> str:
    return f"user/{user_id}/ack"


def user_call(user_id: str) -> str:
    return f"user/{user_id}/call"


def user_call_state(user_id: str) -> str:
    """Retained: the user's live calls (a device connecting mid-call learns of them)."""
    return f"user/{user_id}/call/current"


def user_presence(user_id: str) -> str:
    """Presence changes of the user's conversation peers."""
    return f"user/{user_id}/presence"


def user_support(user_id: str) -> str:
    return f"user/{user_id}/support"


def user_support_desk(operator_id: str) -> str:
    """An operator's own chats: assigned, taken away, closed, escalated."""
    return f"user/{operator_id}/support/desk"


# --- operators (role `operator`: the queue; role `supervisor`: also the floor) ------


def ops_queue() -> str:
    """Retained: every waiting ticket in queue order."""
    return "ops/queue"


def ops_floor() -> str:
    """Retained: every operator's status and load, and wait figures."""
    return "ops/floor"


@dataclass(frozen=True, slots=True)
class UserDown:
    user_id: str
    # ("conv", conv_id, kind) for conversation events, ("ack",), ("call",), ("support",)
    path: tuple[str, ...]


def parse_user_down(topic: str) -> UserDown | None:
    parts = topic.split("/")
    if len(parts) < 3 or parts[0] != "user":
        return None
    return UserDown(user_id=parts[1], path=tuple(parts[2:]))


# --- services ---------------------------------------------------------------------


DYNSEC_REQUEST = "$CONTROL/dynamic-security/v1"
DYNSEC_RESPONSE = "$CONTROL/dynamic-security/v1/response"


def service_status(name: str, instance: str) -> str:
    return f"svc/{name}/{instance}/status"


def service_metrics(name: str, instance: str) -> str:
    """A service's figures, retained and refreshed periodically (core/metrics.py)."""
    return f"svc/{name}/{instance}/metrics"


def livekit_webhook() -> str:
    """Verified LiveKit webhooks, from the API to callsig (services only)."""
    return "livekit/webhook"


def support_wake() -> str:
    """The API tells the support router that the queue or an operator changed."""
    return "svc/support/wake"


def presence_changed(user_id: str) -> str:
    """A user's devices changed state (presence tracker -> support router)."""
    return f"svc/presence/changed/{user_id}"


def presence_changed_filter() -> str:
    return "svc/presence/changed/+"


def conv_members_changed() -> str:
    """A conversation's members changed (drop cached member lists)."""
    return "svc/conv/members"


def push_support(user_id: str) -> str:
    """Support notices for the push service (services only)."""
    return f"push/support/{user_id}"


def push_support_filter() -> str:
    return "push/support/+"


def parse_push_support(topic: str) -> str | None:
    """The user id of `push/support/<user_id>`, or None when it is not one."""
    parts = topic.split("/")
    if len(parts) != 3 or parts[:2] != ["push", "support"] or not is_valid_id(parts[2]):
        return None
    return parts[2]


def push_call(user_id: str) -> str:
    """Call notices for the push service (services only: no user may read them)."""
    return f"push/call/{user_id}"


def push_call_filter() -> str:
    return "push/call/+"


def push_message() -> str:
    """Stored messages for the push service (services only)."""
    return "push/message"


def shared(group: str, topic_filter: str) -> str:
    """A shared subscription: the broker hands each message to one group member."""
    return f"$share/{group}/{topic_filter}"


def matches(topic_filter: str, topic: str) -> bool:
    """MQTT filter matching (`+` one level, `#` the rest), without paho's
    per-call matcher tree: the service runtime does this for every message."""
    filter_parts = topic_filter.split("/")
    topic_parts = topic.split("/")
    for index, part in enumerate(filter_parts):
        if part == "#":
            return True
        if index >= len(topic_parts) or (part != "+" and part != topic_parts[index]):
            return False
    return len(filter_parts) == len(topic_parts)


def topic_ids_valid(*ids: str) -> bool:
    return all(is_valid_id(i) for i in ids)
