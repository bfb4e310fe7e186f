"""amqtt (PyPI), a broker in Python on asyncio.

Its config (YAML; the JSON written here is YAML too) sets a TCP and a WebSocket
listener, a password file (argon2 hashes), the topic ACL plugin and `$SYS`.
The ACL plugin takes literal topics per username and no `%u` pattern, so the
devices' rules are written out for each device, from the project's own rules
(`bridge.acl`). Nothing can be changed while it runs.
"""

from __future__ import annotations

import json
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

from argon2 import PasswordHasher

from bridge import acl
from tools.broker import free_port
from tools.brokers.context import Target
from tools.brokers.devices import Device, StaticDevices, static_pool
from tools.brokers.process import (
    BrokerUnavailable,
    RunningBroker,
    spawn,
    stop,
    wait_for_ports,
)

NAME = "amqtt"
HOST = "127.0.0.1"
SERVICE_USER = "svc"
# The project's dynsec ACL types, as the amqtt plugin's lists. Its config class
# (loaded strictly: an unknown key stops the broker) has no field for the
# receive list in 0.12, so delivery is not filtered per message: a device's
# subscriptions are.
ACL_LISTS = {
    "publishClientSend": "publish_acl",
    "subscribePattern": "acl",
}
DEVICES = 3


def version() -> str:
    try:
        return metadata.version("amqtt")
    except metadata.PackageNotFoundError as exc:
        raise BrokerUnavailable("amqtt is not installed: pip install amqtt") from exc


def password_file(path: Path, accounts: dict[str, str]) -> None:
    # amqtt checks with pwdlib's Argon2 hasher, which reads the standard
    # `$argon2id$...` strings argon2-cffi (a dependency already) writes.
    hasher = PasswordHasher()
    path.write_text("".join(f"{user}:{hasher.hash(pw)}\n" for user, pw in accounts.items()))


def acl_lists(devices: list[Device]) -> dict[str, dict[str, list[str]]]:
    lists: dict[str, dict[str, list[str]]] = {name: {} for name in ACL_LISTS.values()}
    for name in ACL_LISTS.values():
        lists[name][SERVICE_USER] = ["#", "$SYS/#"]
    for device in devices:
        for rule in acl.user_role_acls(device.user_id):
            list_name = ACL_LISTS.get(rule["acltype"])
            if list_name is not None:
                lists[list_name].setdefault(device.username, []).append(rule["topic"])
    return lists


def config(
    tcp_port: int, ws_port: int, passwords: Path, devices: list[Device]
) -> dict[str, object]:
    return {
        "listeners": {
            "default": {"type": "tcp", "bind": f"{HOST}:{tcp_port}"},
            "ws": {"type": "ws", "bind": f"{HOST}:{ws_port}"},
        },
        "plugins": {
            "amqtt.plugins.authentication.FileAuthPlugin": {"password_file": str(passwords)},
            "amqtt.plugins.topic_checking.TopicAccessControlListPlugin": acl_lists(devices),
            "amqtt.plugins.sys.broker.BrokerSysPlugin": {"sys_interval": 1},
        },
    }


@contextmanager
def running(work_dir: Path) -> Iterator[RunningBroker]:
    found_version = version()
    tcp_port, ws_port = free_port(), free_port()
    service_password = secrets.token_urlsafe(24)
    devices = static_pool(DEVICES)
    passwords = work_dir / "passwords"
    password_file(
        passwords, {SERVICE_USER: service_password, **{d.username: d.password for d in devices}}
    )
    config_path = work_dir / "amqtt.yaml"
    config_path.write_text(json.dumps(config(tcp_port, ws_port, passwords, devices), indent=2))
    log_path = work_dir / "amqtt.log"
    process = spawn(
        [sys.executable, "-m", "amqtt.scripts.broker_script", "-c", str(config_path)], log_path
    )
    try:
        wait_for_ports(process, HOST, [tcp_port, ws_port], log_path)
        target = Target(
            HOST,
            tcp_port,
            SERVICE_USER,
            service_password,
            ws_port=ws_port,
            devices=StaticDevices(devices),
        )
        yield RunningBroker(NAME, found_version, target, log_path)
    finally:
        stop(process)
