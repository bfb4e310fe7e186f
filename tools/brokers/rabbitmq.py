"""RabbitMQ (Debian's package) with its MQTT and Web-MQTT plugins, as a node
of its own: its own name, ports, data and log folders and Erlang cookie in the
work folder, so the machine's RabbitMQ is never touched.

Devices are provisioned at run time through the management HTTP API: one
RabbitMQ user per device, with topic permissions (regular expressions on the
`amq.topic` routing key, where MQTT's `/` is `.`) written from the project's
own rules (`bridge.acl`), the user's id literal as in the dynsec roles.
"""

from __future__ import annotations

import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import httpx

from bridge import acl
from core.ids import new_id
from tools.broker import free_port
from tools.brokers.context import Target
from tools.brokers.devices import Device
from tools.brokers.process import (
    BrokerUnavailable,
    RunningBroker,
    spawn,
    stop,
    wait_for_ports,
)

NAME = "rabbitmq"
HOST = "127.0.0.1"
SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
PLUGINS = "[rabbitmq_mqtt,rabbitmq_web_mqtt,rabbitmq_management]."
SERVICE_USER = "svc"
# An Erlang node boots slowly on a busy machine.
START_TIMEOUT = 120.0


def mqtt_filter_regex(topic_filter: str) -> str:
    """An MQTT filter as a regex on AMQP routing keys (`/` -> `.`)."""
    parts = []
    for level in topic_filter.split("/"):
        if level == "+":
            parts.append(r"[^.]+")
        elif level == "#":
            parts.append(r".*")
        else:
            parts.append(re.escape(level))
    return r"\.".join(parts)


def topic_permissions(user_id: str) -> dict[str, str]:
    """The user's dynsec rules as RabbitMQ topic permissions (write, read)."""
    rules = acl.user_role_acls(user_id)

    def joined(acltype: str) -> str:
        regexes = (mqtt_filter_regex(r["topic"]) for r in rules if r["acltype"] == acltype)
        return "|".join(f"^{regex}$" for regex in regexes)

    return {
        "exchange": "amq.topic",
        "write": joined("publishClientSend"),
        "read": joined("subscribePattern"),
    }


class ManagementDevices:
    """Devices as RabbitMQ users, through the management API."""

    runtime = True

    def __init__(self, api_url: str, username: str, password: str) -> None:
        self._http = httpx.AsyncClient(base_url=api_url, auth=(username, password), timeout=10)

    async def _put(self, path: str, body: dict[str, str]) -> None:
        response = await self._http.put(path, json=body)
        response.raise_for_status()

    async def provision(self, count: int) -> list[Device]:
        devices = [
            Device(new_id("probe_u_"), new_id("d_"), secrets.token_urlsafe(24))
            for _ in range(count)
        ]
        for device in devices:
            user = quote(device.username, safe="")
            await self._put(f"/api/users/{user}", {"password": device.password, "tags": ""})
            # Queues and bindings of its own session; what it may publish and
            # read is decided by the topic permissions.
            await self._put(
                f"/api/permissions/%2F/{user}", {"configure": ".*", "write": ".*", "read": ".*"}
            )
            await self._put(f"/api/topic-permissions/%2F/{user}", topic_permissions(device.user_id))
        return devices

    async def revoke(self, device: Device) -> None:
        response = await self._http.delete(f"/api/users/{quote(device.username, safe='')}")
        response.raise_for_status()

    async def close(self) -> None:
        await self._http.aclose()


def config(ports: dict[str, int], password: str) -> str:
    return "\n".join(
        [
            f"listeners.tcp.default = {HOST}:{ports['amqp']}",
            f"mqtt.listeners.tcp.default = {HOST}:{ports['mqtt']}",
            "mqtt.allow_anonymous = false",
            f"web_mqtt.tcp.ip = {HOST}",
            f"web_mqtt.tcp.port = {ports['ws']}",
            "web_mqtt.ws_path = /mqtt",
            f"management.tcp.ip = {HOST}",
            f"management.tcp.port = {ports['http']}",
            f"default_user = {SERVICE_USER}",
            f"default_pass = {password}",
            "default_user_tags.administrator = true",
            "loopback_users = none",
            "",
        ]
    )


def version() -> str:
    found = sorted(SERVER.parent.parent.glob("lib/rabbitmq_server-*"))
    return found[-1].name.removeprefix("rabbitmq_server-") if found else "unknown"


@contextmanager
def running(work_dir: Path) -> Iterator[RunningBroker]:
    if not SERVER.exists() or shutil.which("erl") is None:
        raise BrokerUnavailable("RabbitMQ not found: apt-get install rabbitmq-server")
    ports = {
        "amqp": free_port(),
        "dist": free_port(),
        "mqtt": free_port(),
        "ws": free_port(),
        "http": free_port(),
    }
    password = secrets.token_urlsafe(24)
    (work_dir / "rabbitmq.conf").write_text(config(ports, password))
    (work_dir / "enabled_plugins").write_text(PLUGINS)
    (work_dir / "rabbitmq-env.conf").write_text("")
    log_path = work_dir / "rabbitmq.log"
    node = f"probe-{secrets.token_hex(4)}@localhost"
    process = spawn(
        [str(SERVER)],
        log_path,
        env={
            "RABBITMQ_NODENAME": node,
            "RABBITMQ_DIST_PORT": str(ports["dist"]),
            "RABBITMQ_CONFIG_FILE": str(work_dir / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(work_dir / "rabbitmq-env.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(work_dir / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(work_dir / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(work_dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(work_dir / "log"),
            "RABBITMQ_PID_FILE": str(work_dir / "rabbitmq.pid"),
            "RABBITMQ_LOGS": "-",
            # The Erlang cookie is read from and written to $HOME.
            "HOME": str(work_dir),
        },
    )
    try:
        wait_for_ports(
            process,
            HOST,
            [ports["mqtt"], ports["ws"], ports["http"]],
            log_path,
            timeout=START_TIMEOUT,
        )
        devices = ManagementDevices(f"http://{HOST}:{ports['http']}", SERVICE_USER, password)
        target = Target(
            HOST, ports["mqtt"], SERVICE_USER, password, ws_port=ports["ws"], devices=devices
        )
        yield RunningBroker(NAME, version(), target, log_path)
    finally:
        stop(process, grace=30)
