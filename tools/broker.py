"""Run a Mosquitto with the project's config: render it, bootstrap its ACL file, start it.

Used by the launcher (`./chat run`) and by the tests, so both run the broker
the same way. The dynamic-security file is created once with two clients: the
provisioner (the API: manages device credentials, publishes deliveries) and the
service account (the Python services). Devices are added at run time.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from string import Template

from bridge import acl

PROJECT_DIR = Path(__file__).resolve().parent.parent
CONFIG_TEMPLATE = PROJECT_DIR / "mosquitto" / "mosquitto.conf"
PLUGIN_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto_dynamic_security.so",
    "/usr/local/lib/mosquitto_dynamic_security.so",
)
# dynsec's own default; connects stay cheap. Passwords are 32 random bytes, so
# brute force is not the threat that iteration counts defend against.
PBKDF2_ITERATIONS = 101


def find_plugin() -> str:
    for candidate in PLUGIN_CANDIDATES:
        if Path(candidate).exists():
            return candidate
    raise FileNotFoundError("mosquitto_dynamic_security.so not found: install mosquitto 2.x")


def find_mosquitto() -> str:
    for candidate in ("mosquitto", "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        found = shutil.which(candidate)
        if found:
            return found
    raise FileNotFoundError("mosquitto not found: install it (apt-get install mosquitto)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dynsec_client(username: str, password: str, roles: list[str]) -> dict[str, object]:
    salt = secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    return {
        "username": username,
        "password": base64.b64encode(digest).decode(),
        "salt": base64.b64encode(salt).decode(),
        "iterations": PBKDF2_ITERATIONS,
        "roles": [{"rolename": role} for role in roles],
    }


@dataclass(frozen=True)
class BrokerAccounts:
    admin_username: str
    admin_password: str
    service_username: str
    service_password: str


def write_dynsec_file(path: Path, accounts: BrokerAccounts) -> None:
    document = {
        "defaultACLAccess": acl.DEFAULT_ACL_ACCESS,
        "roles": [
            {"rolename": acl.DYNSEC_ADMIN_ROLE, "acls": acl.dynsec_admin_acls()},
            {"rolename": acl.SERVICE_ROLE, "acls": acl.service_role_acls()},
        ],
        "clients": [
            dynsec_client(
                accounts.admin_username,
                accounts.admin_password,
                [acl.DYNSEC_ADMIN_ROLE, acl.SERVICE_ROLE],
            ),
            dynsec_client(accounts.service_username, accounts.service_password, [acl.SERVICE_ROLE]),
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2))
    path.chmod(0o600)


@dataclass(frozen=True)
class BrokerConfig:
    data_dir: Path
    tcp_port: int
    ws_port: int
    bind: str = "127.0.0.1"
    autosave_seconds: int = 5

    @property
    def config_path(self) -> Path:
        return self.data_dir / "mosquitto.conf"

    @property
    def dynsec_path(self) -> Path:
        return self.data_dir / "dynamic-security.json"

    def render(self) -> str:
        return Template(CONFIG_TEMPLATE.read_text()).substitute(
            MQTT_TCP_PORT=self.tcp_port,
            MQTT_WS_PORT=self.ws_port,
            MQTT_BIND=self.bind,
            DYNSEC_PLUGIN=find_plugin(),
            DATA_DIR=str(self.data_dir.resolve()),
            AUTOSAVE_SECONDS=self.autosave_seconds,
            MOSQUITTO_USER=getpass.getuser(),
        )

    def prepare(self, accounts: BrokerAccounts) -> None:
        """Write the config; create the ACL file only if there is none yet."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.render())
        if not self.dynsec_path.exists():
            write_dynsec_file(self.dynsec_path, accounts)


def start_broker(config: BrokerConfig, log_path: Path) -> subprocess.Popen[bytes]:
    """Start Mosquitto and wait until both listeners accept connections."""
    log_file = log_path.open("ab")
    process = subprocess.Popen(
        [find_mosquitto(), "-c", str(config.config_path)],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ},
    )
    deadline = time.monotonic() + 10
    for port in (config.tcp_port, config.ws_port):
        while not _port_open(config.bind, port):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"mosquitto did not start; see {log_path}")
            time.sleep(0.02)
    return process


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0
