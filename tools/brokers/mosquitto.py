"""Mosquitto with the project's own config (`tools/broker.py` renders it): the
reference every other broker is compared with.

The probe logs in as the service account and provisions devices as the API
does, through the dynamic-security plugin.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tools.broker import BrokerAccounts, BrokerConfig, find_mosquitto, free_port, start_broker
from tools.brokers.context import Target
from tools.brokers.devices import DynsecDevices
from tools.brokers.process import BrokerUnavailable, RunningBroker, command_output, stop

NAME = "mosquitto"


def version() -> str:
    # `mosquitto -h` prints "mosquitto version 2.0.11" and exits non-zero.
    found = re.search(r"version (\S+)", command_output([find_mosquitto(), "-h"]))
    return found.group(1) if found else "unknown"


@contextmanager
def running(work_dir: Path) -> Iterator[RunningBroker]:
    try:
        found_version = version()
    except FileNotFoundError as exc:
        raise BrokerUnavailable(str(exc)) from exc
    config = BrokerConfig(work_dir / "mosquitto", free_port(), free_port())
    accounts = BrokerAccounts(
        "provisioner", secrets.token_urlsafe(24), "svc", secrets.token_urlsafe(24)
    )
    config.prepare(accounts)
    log_path = work_dir / "mosquitto.log"
    process = start_broker(config, log_path)
    host = config.bind
    devices = DynsecDevices(
        host, config.tcp_port, username=accounts.admin_username, password=accounts.admin_password
    )
    target = Target(
        host,
        config.tcp_port,
        accounts.service_username,
        accounts.service_password,
        ws_port=config.ws_port,
        devices=devices,
    )
    try:
        yield RunningBroker(NAME, found_version, target, log_path)
    finally:
        stop(process)
