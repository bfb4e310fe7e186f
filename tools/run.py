"""`./chat run`: the whole system on this machine, until Ctrl-C.

Broker (project config, on the ports in settings), API, persistence, callsig,
support router, presence and push, with SQLite in `data/` unless DATABASE_URL says otherwise.
Broker and LiveKit secrets are made on first start and kept in
`data/secrets.json` (the broker's ACL file holds their hashes). If any process
dies, everything is stopped and the exit says which.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from core.config import DEFAULT_LIVEKIT_SECRET, get_settings
from tools.broker import BrokerTls
from tools.stack import Stack, StackConfig


def _secrets(data_dir: Path) -> dict[str, str]:
    path = data_dir / "secrets.json"
    kept: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    made = {
        "admin": secrets.token_urlsafe(24),
        "service": secrets.token_urlsafe(24),
        # LiveKit wants 32+ characters; give a local livekit-server this one.
        "livekit": secrets.token_urlsafe(32),
    }
    if kept.keys() >= made.keys():
        return kept
    merged = made | kept
    data_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(merged))
    path.chmod(0o600)
    return merged


def main() -> int:
    settings = get_settings()
    data_dir = settings.data_dir.resolve()
    keys = _secrets(data_dir)
    database_url = settings.database_url or f"sqlite:///{data_dir / 'chat.db'}"
    instances = int(os.environ.get("PERSISTENCE_INSTANCES", "1"))
    stack = Stack(
        StackConfig(
            data_dir=data_dir,
            database_url=database_url,
            tcp_port=settings.mqtt_tcp_port,
            ws_port=settings.mqtt_ws_port,
            gateway_port=settings.mqtt_ws_gateway_port or None,
            gateway_workers=settings.mqtt_ws_gateway_workers,
            api_port=settings.api_port,
            persistence_instances=instances,
            admin_password=keys["admin"],
            service_password=keys["service"],
            livekit_api_key=settings.livekit_api_key,
            livekit_api_secret=(
                keys["livekit"]
                if settings.livekit_api_secret == DEFAULT_LIVEKIT_SECRET
                else settings.livekit_api_secret
            ),
            log_level=settings.log_level,
            mqtt_max_connections=settings.mqtt_max_connections,
            broker_tls=BrokerTls.from_settings(settings),
        )
    )
    stopping = False

    def request_stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        stack.start()
    except BaseException:
        stack.stop()
        raise
    db_label = (
        "SQLite " + database_url.removeprefix("sqlite:///")
        if database_url.startswith("sqlite")
        else "PostgreSQL"
    )
    metrics_ports = ", ".join(
        f"{name} :{port}" for name, port in sorted(stack.metrics_ports.items())
    )
    print(
        f"""
Marketplace chat is running.
  HTTP API + docs   {stack.config.api_url}/docs
  Operators         {stack.config.api_url}/dashboard/   (create one: .venv/bin/python -m \
tools.admin create-operator --username NAME --display-name "NAME")
  MQTT (WebSocket)  {settings.effective_ws_url}   (apps, browsers)
  MQTT (TCP)        127.0.0.1:{settings.mqtt_tcp_port}             (services, mosquitto_sub)
  Database          {db_label}
  Calls (LiveKit)   {settings.livekit_url}   (key {settings.livekit_api_key}, secret in \
{data_dir}/secrets.json; see docs/calls.md)
  Push (Expo)       {settings.expo_api_url}
  Logs              {stack.log_dir}
  Metrics           {stack.config.api_url}/metrics; {metrics_ports}
Watch the services:  mosquitto_sub -p {settings.mqtt_tcp_port} -u svc -P "$(python3 -c \
'import json;print(json.load(open("{data_dir}/secrets.json"))["service"])')" -t 'svc/#' -v
Press Ctrl-C to stop.""",
        flush=True,
    )
    exit_code = 0
    while not stopping:
        for name, process in list(stack.processes.items()):
            if process.poll() is not None:
                print(
                    f"{name} exited with {process.returncode}; stopping (see {stack.log_dir})",
                    file=sys.stderr,
                )
                stopping, exit_code = True, 1
        time.sleep(0.2)
    print("Stopping...", flush=True)
    stack.stop()
    print("Stopped.")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
