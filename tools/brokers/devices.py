"""Device accounts for the probe's access checks, from a broker's own way of
provisioning them.

The design gives every device its own credentials (username = client id =
device id) and its user's access rules (docs/architecture.md, "The broker").
Two sources exist:
- `DynsecDevices`: Mosquitto's dynamic security, through the project's own
  `bridge.provisioning.Provisioner`: devices are created and revoked while the
  broker runs, exactly as the API does it;
- `StaticDevices`: accounts a launcher wrote into a broker's config file before
  starting it. The access rules can be checked; provisioning and revoking at run
  time cannot.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from bridge.mqtt import AsyncMqtt, Endpoint
from bridge.provisioning import Provisioner
from core.ids import new_id

NO_BACKEND = "needs a provisioning backend for this broker"


class NotSupported(Exception):
    """This source cannot do that; the message says why."""


@dataclass(frozen=True, slots=True)
class Device:
    user_id: str
    device_id: str
    password: str

    @property
    def username(self) -> str:
        return self.device_id

    @property
    def client_id(self) -> str:
        return self.device_id


class Devices(Protocol):
    # True when devices are created and revoked while the broker runs.
    @property
    def runtime(self) -> bool: ...

    async def provision(self, count: int) -> list[Device]:
        """`count` devices, each of a different user."""
        ...

    async def revoke(self, device: Device) -> None:
        """Remove the device's credentials (NotSupported where it cannot be done)."""
        ...

    async def close(self) -> None: ...


class DynsecDevices:
    """Devices made through Mosquitto's dynamic security, as the API makes them."""

    runtime = True

    def __init__(self, host: str, port: int, *, username: str, password: str) -> None:
        self._mqtt = AsyncMqtt(
            Endpoint(host, port),
            client_id=f"probe-admin-{secrets.token_hex(4)}",
            username=username,
            password=password,
            clean_start=True,
            session_expiry=0,
            reconnect=False,
        )
        self._provisioner = Provisioner(self._mqtt)
        self._started = False

    async def _start(self) -> None:
        if not self._started:
            await self._mqtt.connect()
            await self._provisioner.start()
            self._started = True

    async def provision(self, count: int) -> list[Device]:
        await self._start()
        devices = [
            Device(new_id("probe_u_"), new_id("d_"), secrets.token_urlsafe(24))
            for _ in range(count)
        ]
        for device in devices:
            await self._provisioner.create_device(device.user_id, device.device_id, device.password)
        return devices

    async def revoke(self, device: Device) -> None:
        await self._start()
        await self._provisioner.delete_device(device.device_id)

    async def close(self) -> None:
        if self._started:
            await self._provisioner.stop()
            await self._mqtt.disconnect()


class StaticDevices:
    """Accounts written into the broker's config before it started."""

    runtime = False

    def __init__(self, devices: Sequence[Device]) -> None:
        self._devices = list(devices)

    async def provision(self, count: int) -> list[Device]:
        if count > len(self._devices):
            raise NotSupported(f"the config holds {len(self._devices)} devices, not {count}")
        return self._devices[:count]

    async def revoke(self, device: Device) -> None:
        raise NotSupported(NO_BACKEND)

    async def close(self) -> None:
        return None


def static_pool(count: int) -> list[Device]:
    """Devices for a launcher to write into a config file, one user each."""
    return [
        Device(f"probe_u_{index}", f"d_probe{index}", secrets.token_urlsafe(24))
        for index in range(count)
    ]
