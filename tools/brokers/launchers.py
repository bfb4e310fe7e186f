"""Every broker the probe can start by name: each module's `running(work_dir)`
starts its broker on free ports in `work_dir` and stops it on exit."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from tools.brokers import aedes, amqtt, mosquitto, nats, rabbitmq
from tools.brokers.process import RunningBroker

Launcher = Callable[[Path], AbstractContextManager[RunningBroker]]

LAUNCHERS: dict[str, Launcher] = {
    mosquitto.NAME: mosquitto.running,
    amqtt.NAME: amqtt.running,
    nats.NAME: nats.running,
    rabbitmq.NAME: rabbitmq.running,
    **{name: aedes.launcher(name) for name in aedes.RELEASES},
}
