"""The whole system as local processes: broker, API, persistence, callsig and
support router instances, the presence tracker, push.

Used by `./chat run` and by the integration tests, so what is tested is what
runs. Each process is a real OS process (the tests kill -9 them).
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
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from bridge import topics
from core.db import migrate
from core.timefmt import to_wire, utcnow
from tools.broker import BrokerAccounts, BrokerConfig, free_port, start_broker

PROJECT_DIR = Path(__file__).resolve().parent.parent


@dataclass
class StackConfig:
    data_dir: Path
    database_url: str
    tcp_port: int = field(default_factory=free_port)
    ws_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    persistence_instances: int = 1
    callsig_instances: int = 1
    router_instances: int = 1
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    service_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    livekit_api_key: str = "devkey"
    livekit_api_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    log_level: str = "INFO"
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def accounts(self) -> BrokerAccounts:
        return BrokerAccounts("provisioner", self.admin_password, "svc", self.service_password)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"


class Stack:
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.broker_config = BrokerConfig(
            config.data_dir / "mosquitto", config.tcp_port, config.ws_port
        )
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.log_dir = config.data_dir / "logs"

    def env(self, instance: str = "1") -> dict[str, str]:
        c = self.config
        return {
            **os.environ,
            "DATABASE_URL": c.database_url,
            "DATA_DIR": str(c.data_dir),
            "MQTT_HOST": "127.0.0.1",
            "MQTT_TCP_PORT": str(c.tcp_port),
            "MQTT_WS_PORT": str(c.ws_port),
            "MQTT_ADMIN_USERNAME": c.accounts.admin_username,
            "MQTT_ADMIN_PASSWORD": c.admin_password,
            "MQTT_SERVICE_USERNAME": c.accounts.service_username,
            "MQTT_SERVICE_PASSWORD": c.service_password,
            "API_PORT": str(c.api_port),
            "LIVEKIT_API_KEY": c.livekit_api_key,
            "LIVEKIT_API_SECRET": c.livekit_api_secret,
            "INSTANCE": instance,
            "LOG_LEVEL": c.log_level,
            "PYTHONUNBUFFERED": "1",
            **c.extra_env,
        }

    # --- processes -----------------------------------------------------------------

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        migrate(self.config.database_url)
        self.broker_config.prepare(self.config.accounts)
        self.start_broker()
        self.start_api()
        for index in range(1, self.config.persistence_instances + 1):
            self.start_persistence(str(index))
        for index in range(1, self.config.callsig_instances + 1):
            self.start_callsig(str(index))
        for index in range(1, self.config.router_instances + 1):
            self.start_router(str(index))
        self.start_service("presence", "services.presence", "1")
        self.start_service("push", "services.push", "1")

    def start_broker(self) -> None:
        self.processes["broker"] = start_broker(self.broker_config, self.log_dir / "broker.log")

    def _spawn(self, name: str, module: str, instance: str) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"{name}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", module],
            cwd=PROJECT_DIR,
            env=self.env(instance),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes[name] = process
        return process

    def start_api(self) -> None:
        process = self._spawn("api", "api", "1")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"API exited; see {self.log_dir / 'api.log'}")
            try:
                if httpx.get(f"{self.config.api_url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("API did not become ready")

    def start_persistence(self, instance: str) -> None:
        self.start_service("persistence", "services.persistence", instance)

    def start_callsig(self, instance: str) -> None:
        self.start_service("callsig", "services.callsig", instance)

    def start_router(self, instance: str) -> None:
        self.start_service("support_router", "services.support_router", instance)

    def start_service(self, service: str, module: str, instance: str) -> None:
        started = to_wire(utcnow())
        process = self._spawn(f"{service}-{instance}", module, instance)
        self.wait_online(service, instance, since=started, process=process)

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
        # Services first, broker last, so the services can say goodbye.
        for name in [n for n in self.processes if n != "broker"]:
            self.terminate(name)
        self.terminate("broker")
