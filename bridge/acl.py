"""Who may publish and subscribe where: the contract's access rules as broker ACLs.

The broker enforces these through Mosquitto's dynamic security plugin:
- every device is its own dynsec client (username = client id = device id), so
  one device can be revoked alone and at once, and no one can take its client id;
- every user has a role `u:<user_id>` whose ACLs name the user's own id
  literally (dynsec in Mosquitto 2.0 does not expand `%u`, and a pattern would
  be a shared channel: see docs/architecture.md);
- the default is deny for publishing, receiving and subscribing.
"""

from __future__ import annotations

from typing import Any

from bridge import topics
from bridge.topics import UpKind

SERVICE_ROLE = "service"
DYNSEC_ADMIN_ROLE = "dynsec-admin"
# Given to operators' devices beside their user role: the live support views.
OPERATOR_ROLE = "operator"
SUPERVISOR_ROLE = "supervisor"

Acl = dict[str, Any]


def user_role_name(user_id: str) -> str:
    return f"u:{user_id}"


def _allow(acltype: str, topic: str) -> Acl:
    return {"acltype": acltype, "topic": topic, "allow": True}


def user_role_acls(user_id: str) -> list[Acl]:
    sends = [
        topics.conv_up("+", UpKind.MSG, user_id),
        topics.conv_up("+", UpKind.READ, user_id),
        topics.conv_up("+", UpKind.TYPING, user_id),
        topics.call_up_any(user_id),
        topics.presence(user_id, "+"),
    ]
    own = topics.user_root(user_id)
    return [
        *(_allow("publishClientSend", topic) for topic in sends),
        _allow("subscribePattern", own),
        _allow("publishClientReceive", own),
        _allow("unsubscribePattern", own),
    ]


def _read_only(topic: str) -> list[Acl]:
    return [
        _allow("subscribePattern", topic),
        _allow("publishClientReceive", topic),
        _allow("unsubscribePattern", topic),
    ]


def operator_role_acls() -> list[Acl]:
    """The waiting queue (read only). Operators chat through their user role."""
    return _read_only(topics.ops_queue())


def supervisor_role_acls() -> list[Acl]:
    """The queue and the floor (every operator's status and load), read only."""
    return [*_read_only(topics.ops_queue()), *_read_only(topics.ops_floor())]


def support_roles_for(user_role: str) -> list[str]:
    """The broker roles a device gets beside its user's own, by `User.role`."""
    if user_role == "supervisor":
        return [SUPERVISOR_ROLE]
    if user_role == "operator":
        return [OPERATOR_ROLE]
    return []


def service_role_acls() -> list[Acl]:
    # `#` never matches topics that start with `$`, so services cannot reach
    # `$CONTROL` (credentials) through this role.
    return [
        _allow("publishClientSend", "#"),
        _allow("publishClientReceive", "#"),
        _allow("subscribePattern", "#"),
        _allow("unsubscribePattern", "#"),
        _allow("publishClientReceive", "$SYS/#"),
        _allow("subscribePattern", "$SYS/#"),
    ]


def dynsec_admin_acls() -> list[Acl]:
    control = "$CONTROL/dynamic-security/#"
    return [
        _allow("publishClientSend", control),
        _allow("publishClientReceive", control),
        _allow("subscribePattern", control),
    ]


DEFAULT_ACL_ACCESS = {
    "publishClientSend": False,
    "publishClientReceive": False,
    "subscribe": False,
    "unsubscribe": True,
}
