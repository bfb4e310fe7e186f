"""Run a Mosquitto with the project's config: render it, bootstrap its ACL file, start it.

Used by the launcher (`./chat run`), by the tests, and in containers as a
set-up step before the broker starts (docs/deploy.md):

    python -m tools.broker prepare --data-dir /mosquitto/data \
        --config /mosquitto/config/mosquitto.conf --plugin PATH --user mosquitto --bind 0.0.0.0

which reads ports, accounts, TLS and limits from the settings (core/config.py),
so every way of running the broker renders the same template. The
dynamic-security file is created once with two clients: the provisioner (the
API: manages device credentials, publishes deliveries) and the service account
(the Python services). Devices are added at run time.
"""

from __future__ import annotations

import argparse
import base64
import getpass
import hashlib
import json
import os
import random
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from string import Template

from bridge import acl
from core.config import Settings, get_settings

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
DEFAULT_MAX_CONNECTIONS: int = Settings.model_fields["mqtt_max_connections"].default
# How a TLS line of the template is left out: commented.
OFF = "#"
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
# Below this, well-known services cluster.
LOWEST_PICKED_PORT = 10000
# Ports this process handed out: not free for the next caller, even while
# their process has not bound them yet.
_handed_out: set[int] = set()


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
    """A TCP port nothing on this machine holds, for a process that binds it
    later (a service binds its metrics port after its imports, seconds later).

    Drawn at random from outside the kernel's ephemeral range: ports in that
    range are also handed out as source ports of outgoing connections, and on a
    busy machine one of those takes a port picked with `bind(0)` before its
    process binds it (seen here: a service died of EADDRINUSE)."""
    low, high = _ephemeral_range()
    below = max(0, low - LOWEST_PICKED_PORT)  # ports under the range, then over it
    outside = below + max(0, 65535 - high)
    for _ in range(500 if outside else 0):
        index = random.randrange(outside)
        port = LOWEST_PICKED_PORT + index if index < below else high + 1 + index - below
        if port not in _handed_out and _bindable(port):
            _handed_out.add(port)
            return port
    with socket.socket() as sock:  # no room outside: whatever the kernel gives
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        return int(port)


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = (int(n) for n in EPHEMERAL_RANGE.read_text().split())
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default
    return low, high


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
        return True


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

    @classmethod
    def from_settings(cls, settings: Settings) -> BrokerAccounts:
        return cls(
            settings.mqtt_admin_username,
            settings.mqtt_admin_password,
            settings.mqtt_service_username,
            settings.mqtt_service_password,
        )


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
class BrokerTls:
    """The TLS listeners: MQTT over TLS and secure WebSocket. Paths are as the
    broker sees them (in a container: its mounts)."""

    certfile: Path
    keyfile: Path
    tcp_port: int
    ws_port: int
    # Given: clients of the MQTT/TLS port must show a certificate this CA signed.
    cafile: Path | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> BrokerTls | None:
        """TLS as configured, or None; a half-configured TLS is refused."""
        cert, key, ca = (
            settings.mqtt_tls_certfile,
            settings.mqtt_tls_keyfile,
            settings.mqtt_tls_cafile,
        )
        if not cert and not key and not ca:
            return None
        if not (cert and key):
            raise ValueError(
                "broker TLS needs both MQTT_TLS_CERTFILE and MQTT_TLS_KEYFILE "
                "(MQTT_TLS_CAFILE alone turns nothing on)"
            )
        return cls(
            Path(cert),
            Path(key),
            settings.mqtt_tls_tcp_port,
            settings.mqtt_tls_ws_port,
            Path(ca) if ca else None,
        )


@dataclass(frozen=True)
class BrokerConfig:
    data_dir: Path
    tcp_port: int
    ws_port: int
    bind: str = "127.0.0.1"
    autosave_seconds: int = 5
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    tls: BrokerTls | None = None
    # Where the config is written; by default beside the broker's data.
    config_file: Path | None = None
    # The dynamic-security plugin as the broker sees it; by default found here.
    plugin: str | None = None
    # The user the broker runs as; by default whoever runs this.
    user: str | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        data_dir: Path,
        *,
        bind: str = "127.0.0.1",
        config_file: Path | None = None,
        plugin: str | None = None,
        user: str | None = None,
    ) -> BrokerConfig:
        """Ports, limits and TLS from the settings; where things are (data
        folder, config file, plugin, user, listeners' address) from the caller."""
        return cls(
            data_dir,
            settings.mqtt_tcp_port,
            settings.mqtt_ws_port,
            bind=bind,
            max_connections=settings.mqtt_max_connections,
            tls=BrokerTls.from_settings(settings),
            config_file=config_file,
            plugin=plugin,
            user=user,
        )

    @property
    def config_path(self) -> Path:
        return self.config_file or self.data_dir / "mosquitto.conf"

    @property
    def dynsec_path(self) -> Path:
        return self.data_dir / "dynamic-security.json"

    @property
    def ports(self) -> tuple[int, ...]:
        """Every listener's port."""
        plain = (self.tcp_port, self.ws_port)
        return plain if self.tls is None else (*plain, self.tls.tcp_port, self.tls.ws_port)

    def render(self) -> str:
        return Template(CONFIG_TEMPLATE.read_text()).substitute(
            MQTT_TCP_PORT=self.tcp_port,
            MQTT_WS_PORT=self.ws_port,
            MQTT_BIND=self.bind,
            MQTT_MAX_CONNECTIONS=self.max_connections,
            DYNSEC_PLUGIN=self.plugin or find_plugin(),
            DATA_DIR=str(self.data_dir.resolve()),
            AUTOSAVE_SECONDS=self.autosave_seconds,
            MOSQUITTO_USER=self.user or getpass.getuser(),
            **_tls_placeholders(self.tls),
        )

    def prepare(self, accounts: BrokerAccounts) -> None:
        """Write the config; create the ACL file only if there is none yet."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.render())
        if not self.dynsec_path.exists():
            write_dynsec_file(self.dynsec_path, accounts)


def _tls_placeholders(tls: BrokerTls | None) -> dict[str, object]:
    """The template's TLS lines: on (an empty prefix) with the files and ports
    configured, or commented out."""
    if tls is None:
        return {
            "TLS": OFF,
            "TLS_CLIENT_CERTS": OFF,
            "MQTT_TLS_TCP_PORT": "",
            "MQTT_TLS_WS_PORT": "",
            "MQTT_TLS_CERTFILE": "",
            "MQTT_TLS_KEYFILE": "",
            "MQTT_TLS_CAFILE": "",
        }
    return {
        "TLS": "",
        "TLS_CLIENT_CERTS": "" if tls.cafile else OFF,
        "MQTT_TLS_TCP_PORT": tls.tcp_port,
        "MQTT_TLS_WS_PORT": tls.ws_port,
        "MQTT_TLS_CERTFILE": tls.certfile.absolute(),
        "MQTT_TLS_KEYFILE": tls.keyfile.absolute(),
        "MQTT_TLS_CAFILE": tls.cafile.absolute() if tls.cafile else "",
    }


def start_broker(config: BrokerConfig, log_path: Path) -> subprocess.Popen[bytes]:
    """Start Mosquitto and wait until every listener accepts connections."""
    log_file = log_path.open("ab")
    process = subprocess.Popen(
        [find_mosquitto(), "-c", str(config.config_path)],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ},
    )
    deadline = time.monotonic() + 10
    for port in config.ports:
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


def command_line() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.broker",
        description="Set up the broker: ports, accounts, TLS and limits come from the settings.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    prepare = commands.add_parser(
        "prepare", help="render the config; create the ACL file if there is none yet"
    )
    prepare.add_argument(
        "--data-dir", type=Path, required=True, help="the broker's data folder, as it sees it"
    )
    prepare.add_argument("--config", type=Path, required=True, help="where to write the config")
    prepare.add_argument(
        "--plugin", help="the dynamic-security plugin, as the broker sees it (default: found here)"
    )
    prepare.add_argument("--user", help="the user the broker runs as (default: this one)")
    prepare.add_argument("--bind", default="127.0.0.1", help="the listeners' address")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = command_line().parse_args(argv)
    settings = get_settings()
    config = BrokerConfig.from_settings(
        settings,
        args.data_dir,
        bind=args.bind,
        config_file=args.config,
        plugin=args.plugin,
        user=args.user,
    )
    config.prepare(BrokerAccounts.from_settings(settings))
    tls = "with TLS" if config.tls else "without TLS"
    print(f"wrote {config.config_path} ({tls}); ACL file {config.dynsec_path}")


if __name__ == "__main__":
    main()
