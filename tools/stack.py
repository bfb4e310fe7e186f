"""The whole system as local processes: broker, API, persistence, callsig,
support router, presence tracker and push instances.

Used by `./chat run` and by the integration tests, so what is tested is what
runs. Each process is a real OS process (the tests kill -9 them). `PROCESSES`
is the one list of what runs; docker-compose.yml runs the same list, with the
same settings, and tests/unit/test_compose.py holds the two together.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from bridge import topics
from core.db import migrate
from core.timefmt import to_wire, utcnow
from tools.broker import (
    DEFAULT_MAX_CONNECTIONS,
    BrokerAccounts,
    BrokerConfig,
    BrokerTls,
    free_port,
    start_broker,
)
from tools.health import wait_healthy
from tools.ws_gateway import gateway_settings, start_gateway

PROJECT_DIR = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class ProcessKind:
    """A kind of Python process of the system."""

    # Services are named `<name>-<instance>`, which is also their MQTT client id
    # and their status topic's level; the API is one process named `api`.
    name: str
    module: str  # run as `python -m <module>`
    # The StackConfig field with how many instances run (None: exactly one).
    # Instances of one kind share their work through `$share` subscriptions
    # (presence instances each see every announcement and settle who acts in the
    # database: services/presence/service.py).
    instances_field: str | None = None
    # A service says it is online on its retained `svc/<name>/<instance>/status`
    # and serves Prometheus metrics on METRICS_PORT; the API answers /healthz
    # and serves /metrics on its own port.
    is_service: bool = True


API = ProcessKind("api", "api", is_service=False)
PERSISTENCE = ProcessKind("persistence", "services.persistence", "persistence_instances")
CALLSIG = ProcessKind("callsig", "services.callsig", "callsig_instances")
SUPPORT_ROUTER = ProcessKind("support_router", "services.support_router", "router_instances")
PRESENCE = ProcessKind("presence", "services.presence", "presence_instances")
PUSH = ProcessKind("push", "services.push", "push_instances")

# Everything that runs, in start order (the API first: it provisions devices;
# services may start in any order).
PROCESSES: tuple[ProcessKind, ...] = (API, PERSISTENCE, CALLSIG, SUPPORT_ROUTER, PRESENCE, PUSH)

# The WebSocket gateway's process name (Node, not one of PROCESSES).
GATEWAY = "ws_gateway"

# What every process's environment carries besides settings (the image sets
# the same in docker-compose deployments).
PROCESS_ENVIRONMENT = {"PYTHONUNBUFFERED": "1"}
API_READY_SECONDS = 30.0


@dataclass(frozen=True)
class PlannedProcess:
    kind: ProcessKind
    instance: str

    @property
    def name(self) -> str:
        return f"{self.kind.name}-{self.instance}" if self.kind.is_service else self.kind.name


@dataclass
class StackConfig:
    data_dir: Path
    database_url: str
    tcp_port: int = field(default_factory=free_port)
    ws_port: int = field(default_factory=free_port)
    # The devices' WebSocket endpoint (tools/ws_gateway.py); None: devices are
    # sent to the broker's own WebSocket listener (`ws_port`).
    gateway_port: int | None = field(default_factory=free_port)
    gateway_workers: int = 1
    api_port: int = field(default_factory=free_port)
    persistence_instances: int = 1
    callsig_instances: int = 1
    router_instances: int = 1
    presence_instances: int = 1
    push_instances: int = 1
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    service_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    livekit_api_key: str = "devkey"
    livekit_api_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    log_level: str = "INFO"
    # The broker's connection cap per listener, and its TLS listeners (if any).
    mqtt_max_connections: int = DEFAULT_MAX_CONNECTIONS
    broker_tls: BrokerTls | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def accounts(self) -> BrokerAccounts:
        return BrokerAccounts("provisioner", self.admin_password, "svc", self.service_password)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def instances_of(self, kind: ProcessKind) -> int:
        if kind.instances_field is None:
            return 1
        return int(getattr(self, kind.instances_field))

    def set_instances(self, kind: ProcessKind, count: int) -> None:
        if kind.instances_field is None:
            raise ValueError(f"{kind.name} runs as exactly one process")
        setattr(self, kind.instances_field, count)


class Stack:
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.broker_config = BrokerConfig(
            config.data_dir / "mosquitto",
            config.tcp_port,
            config.ws_port,
            max_connections=config.mqtt_max_connections,
            tls=config.broker_tls,
        )
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        # Each service's Prometheus port, by process name ("persistence-1"); a
        # restarted process keeps its port.
        self.metrics_ports: dict[str, int] = {}
        self.log_dir = config.data_dir / "logs"

    def plan(self, kinds: Sequence[ProcessKind] = PROCESSES) -> list[PlannedProcess]:
        """Every Python process of these kinds this configuration runs, in start order."""
        return [
            PlannedProcess(kind, str(index))
            for kind in kinds
            for index in range(1, self.config.instances_of(kind) + 1)
        ]

    def settings_env(self, instance: str = "1") -> dict[str, str]:
        """The settings the launcher gives every process (anything else comes
        from the environment or `.env`, as for any process)."""
        c = self.config
        return {
            "DATABASE_URL": c.database_url,
            "DATA_DIR": str(c.data_dir),
            "MQTT_HOST": "127.0.0.1",
            "MQTT_TCP_PORT": str(c.tcp_port),
            "MQTT_WS_PORT": str(c.ws_port),
            "MQTT_WS_GATEWAY_PORT": str(c.gateway_port or 0),
            "MQTT_ADMIN_USERNAME": c.accounts.admin_username,
            "MQTT_ADMIN_PASSWORD": c.admin_password,
            "MQTT_SERVICE_USERNAME": c.accounts.service_username,
            "MQTT_SERVICE_PASSWORD": c.service_password,
            "API_PORT": str(c.api_port),
            "LIVEKIT_API_KEY": c.livekit_api_key,
            "LIVEKIT_API_SECRET": c.livekit_api_secret,
            "INSTANCE": instance,
            "LOG_LEVEL": c.log_level,
            **c.extra_env,
        }

    def process_settings(self, process: PlannedProcess) -> dict[str, str]:
        """The settings one process gets: the common ones, and a service's own
        metrics port."""
        settings = self.settings_env(process.instance)
        if process.kind.is_service:
            if process.name not in self.metrics_ports:
                self.metrics_ports[process.name] = free_port()
            settings["METRICS_PORT"] = str(self.metrics_ports[process.name])
        return settings

    def env(self, instance: str = "1") -> dict[str, str]:
        """A whole environment for a process of this system (tools included)."""
        return {**os.environ, **PROCESS_ENVIRONMENT, **self.settings_env(instance)}

    # --- processes -----------------------------------------------------------------

    def start(self, kinds: Sequence[ProcessKind] = PROCESSES) -> None:
        """Migrate, start the broker, then the processes (all of them, or the
        kinds a test needs)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        migrate(self.config.database_url)
        self.broker_config.prepare(self.config.accounts)
        self.start_broker()
        self.start_gateway()
        for process in self.plan(kinds):
            self.start_process(process)

    def start_broker(self) -> None:
        self.processes["broker"] = start_broker(self.broker_config, self.log_dir / "broker.log")

    def start_gateway(self) -> None:
        """The devices' WebSocket gateway, if this configuration has one."""
        c = self.config
        if c.gateway_port is not None:
            settings = gateway_settings(
                c.gateway_port, c.tcp_port, c.mqtt_max_connections, workers=c.gateway_workers
            )
            self.processes[GATEWAY] = start_gateway(settings, self.log_dir / "ws_gateway.log")

    def start_process(self, process: PlannedProcess) -> None:
        if process.kind.is_service:
            self._start_service(process)
        else:
            self.start_api()

    def _spawn(self, process: PlannedProcess) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"{process.name}.log").open("ab")
        spawned = subprocess.Popen(
            [sys.executable, "-m", process.kind.module],
            cwd=PROJECT_DIR,
            env={**os.environ, **PROCESS_ENVIRONMENT, **self.process_settings(process)},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes[process.name] = spawned
        return spawned

    def start_api(self) -> None:
        process = self._spawn(PlannedProcess(API, "1"))
        url = f"{self.config.api_url}/healthz"
        wait_healthy(process, url, API_READY_SECONDS, "the API", self.log_dir / "api.log")

    def start_persistence(self, instance: str) -> None:
        self._start_service(PlannedProcess(PERSISTENCE, instance))

    def start_callsig(self, instance: str) -> None:
        self._start_service(PlannedProcess(CALLSIG, instance))

    def start_router(self, instance: str) -> None:
        self._start_service(PlannedProcess(SUPPORT_ROUTER, instance))

    def start_service(self, service: str, module: str, instance: str) -> None:
        """Start one instance of the service `service` (run as `module`)."""
        kind = next((k for k in PROCESSES if (k.name, k.module) == (service, module)), None)
        if kind is None or not kind.is_service:
            raise ValueError(f"not a service of this system: {service} ({module})")
        self._start_service(PlannedProcess(kind, instance))

    def _start_service(self, process: PlannedProcess) -> None:
        started = to_wire(utcnow())
        spawned = self._spawn(process)
        self.wait_online(process.kind.name, process.instance, since=started, process=spawned)

    def wait_online(
        self,
        service: str,
        instance: str,
        *,
        since: str,
        process: subprocess.Popen[bytes] | None = None,
        timeout: float = 30,
    ) -> None:
        """Wait for the service's retained status to say online, from this start on."""
        seen = threading.Event()

        def on_message(_c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
            status = json.loads(msg.payload or b"{}")
            if status.get("online") and status.get("since", "") >= since:
                seen.set()

        client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        client.username_pw_set(self.config.accounts.service_username, self.config.service_password)
        client.on_message = on_message
        client.on_connect = lambda c, *_: c.subscribe(topics.service_status(service, instance), 1)
        client.connect("127.0.0.1", self.config.tcp_port)
        client.loop_start()
        try:
            deadline = time.monotonic() + timeout
            while not seen.wait(0.05):
                if process is not None and process.poll() is not None:
                    raise RuntimeError(f"{service}-{instance} exited; see {self.log_dir}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{service}-{instance} did not come online")
        finally:
            client.disconnect()
            client.loop_stop()

    def kill(self, name: str) -> None:
        """kill -9: no clean shutdown, no goodbye."""
        process = self.processes.pop(name)
        process.kill()
        process.wait()

    def terminate(self, name: str, timeout: float = 10) -> None:
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop(self) -> None:
        # Services first, broker last, so the services can say goodbye; the
        # gateway just before the broker, so the devices' Wills are published.
        for name in [n for n in self.processes if n not in ("broker", GATEWAY)]:
            self.terminate(name)
        self.terminate(GATEWAY)
        self.terminate("broker")
