"""Starting the devices' WebSocket gateway (ws_gateway/gateway.mjs, on Node).

Why a gateway in front of Mosquitto's WebSocket listener: docs/load.md ("Many
connections"). It needs Node.js and `npm ci` in ws_gateway/ (`./chat` does
both).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tools.health import wait_healthy

GATEWAY_DIR = Path(__file__).resolve().parent.parent / "ws_gateway"
SCRIPT = GATEWAY_DIR / "gateway.mjs"
READY_SECONDS = 15.0


def node() -> str:
    found = shutil.which("node")
    if found is None:
        raise RuntimeError("the WebSocket gateway needs Node.js: run ./chat run (it installs it)")
    if not (GATEWAY_DIR / "node_modules" / "ws").is_dir():
        raise RuntimeError(f"the WebSocket gateway is not installed: npm ci in {GATEWAY_DIR}")
    return found


def gateway_settings(
    port: int,
    broker_port: int,
    max_connections: int,
    *,
    workers: int = 1,
    broker_host: str = "127.0.0.1",
) -> dict[str, str]:
    """The settings the gateway reads (the project's settings of those names)."""
    return {
        "MQTT_WS_GATEWAY_PORT": str(port),
        "MQTT_WS_GATEWAY_WORKERS": str(workers),
        "MQTT_WS_GATEWAY_BIND": "127.0.0.1",
        "MQTT_HOST": broker_host,
        "MQTT_TCP_PORT": str(broker_port),
        "MQTT_MAX_CONNECTIONS": str(max_connections),
    }


def start_gateway(settings: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start the gateway and wait until it answers /healthz."""
    log_file = log_path.open("ab")
    process = subprocess.Popen(
        [node(), str(SCRIPT)],
        cwd=GATEWAY_DIR,
        env={**os.environ, **settings},
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{settings['MQTT_WS_GATEWAY_PORT']}/healthz"
    wait_healthy(process, url, READY_SECONDS, "the WebSocket gateway", log_path)
    return process
