"""What a probe runs against (`Target`), what each check returns (`Result`), and
the connection factory every check uses (`ProbeContext`)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Literal

from bridge.mqtt import Endpoint, Transport, Will
from tools.brokers.devices import NO_BACKEND, Device, Devices
from tools.brokers.probe_client import MQTT5, ProbeClient

Status = Literal["pass", "fail", "n/a"]
# The project's broker cuts packets above this (mosquitto.conf `max_packet_size`).
PROJECT_MAX_PACKET_SIZE = 262144
# Waits: for something that should arrive, and for silence after something
# that should not.
ARRIVAL = 3.0
QUIET = 0.5


@dataclass(frozen=True, slots=True)
class Result:
    feature: str
    status: Status
    reason: str


@dataclass(frozen=True)
class Target:
    """A running broker and an account that may publish and subscribe anywhere
    (the project's service account on Mosquitto)."""

    host: str
    port: int
    username: str
    password: str
    ws_port: int | None = None
    ws_path: str = "/mqtt"
    # The size above which the broker is configured to cut a packet.
    max_packet_size: int = PROJECT_MAX_PACKET_SIZE
    devices: Devices | None = None
    # Why there is no device source, when there is none.
    no_devices_reason: str = NO_BACKEND

    def endpoint(self, transport: Transport = "tcp") -> Endpoint:
        if transport == "websockets":
            if self.ws_port is None:
                raise ValueError("no WebSocket port given")
            return Endpoint(self.host, self.ws_port, "websockets", self.ws_path)
        return Endpoint(self.host, self.port)


@dataclass
class ProbeContext:
    target: Target
    # The protocol level the checks speak: MQTT 5, or 3.1.1 where the broker
    # refused MQTT 5 (the table says so).
    protocol: int = MQTT5
    # Every topic of one probe run starts here, so runs never see each other.
    prefix: str = field(default_factory=lambda: f"probe/{secrets.token_hex(4)}")

    def topic(self, *levels: str) -> str:
        return "/".join((self.prefix, *levels))

    def client_id(self, role: str) -> str:
        return f"probe-{role}-{secrets.token_hex(4)}"

    def client(
        self,
        role: str,
        *,
        client_id: str | None = None,
        transport: Transport = "tcp",
        password: str | None = None,
        clean_start: bool = True,
        session_expiry: int = 0,
        will: Will | None = None,
        manual_ack: bool = False,
        protocol: int | None = None,
    ) -> ProbeClient:
        """A connection with the target's account (not yet connected)."""
        return ProbeClient(
            self.target.endpoint(transport),
            client_id=client_id or self.client_id(role),
            username=self.target.username,
            password=self.target.password if password is None else password,
            protocol=protocol or self.protocol,
            clean_start=clean_start,
            session_expiry=session_expiry,
            will=will,
            manual_ack=manual_ack,
        )

    def device_client(self, device: Device, *, client_id: str | None = None) -> ProbeClient:
        return ProbeClient(
            self.target.endpoint(),
            client_id=client_id or device.client_id,
            username=device.username,
            password=device.password,
            protocol=self.protocol,
        )
