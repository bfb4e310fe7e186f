"""The access rules of the design, checked with real device accounts: each
device publishes only as its own user and reads only its own user's topics,
its credentials are bound to its client id, and revoking it drops it at once
(docs/architecture.md, "The broker"). The accounts come from the broker's own
provisioning (`tools.brokers.devices`); where a broker has none, the checks say
so instead of passing or failing.
"""

from __future__ import annotations

import asyncio
import time

from bridge import topics
from bridge.topics import UpKind
from tools.brokers.checks import failed, passed
from tools.brokers.context import ARRIVAL, QUIET, ProbeContext, Result
from tools.brokers.devices import Device, NotSupported
from tools.brokers.probe_client import ConnectionLost, ConnectRefused, PublishRefused

# Two users' devices for the rules, a third to revoke.
DEVICES = 3


class AccessChecks:
    """Devices are provisioned once, on first use, for all the checks."""

    def __init__(self, ctx: ProbeContext) -> None:
        self.ctx = ctx
        self._devices: list[Device] | None = None
        self._provision_ms = 0.0

    async def devices(self) -> list[Device]:
        source = self.ctx.target.devices
        if source is None:
            raise NotSupported(self.ctx.target.no_devices_reason)
        if self._devices is None:
            started = time.monotonic()
            self._devices = await source.provision(DEVICES)
            self._provision_ms = (time.monotonic() - started) * 1000 / DEVICES
        return self._devices

    async def provisioning(self) -> Result:
        feature = "provisioning"
        source = self.ctx.target.devices
        if source is None or not source.runtime:
            reason = self.ctx.target.no_devices_reason if source is None else ""
            return Result(
                feature, "n/a", reason or "accounts only in the config file read at start"
            )
        device = (await self.devices())[0]
        async with self.ctx.device_client(device):
            pass
        return passed(
            feature,
            f"{DEVICES} devices created while the broker ran ({self._provision_ms:.0f} ms each), "
            "logged in at once",
        )

    async def publish_as_oneself(self) -> Result:
        feature = "acl_publish"
        own, other = (await self.devices())[:2]
        conv = "c_probe"
        forged_topic = topics.conv_up(conv, UpKind.MSG, other.user_id)
        own_topic = topics.conv_up(conv, UpKind.MSG, own.user_id)
        async with self.ctx.client("svc-watch") as watcher:
            await watcher.subscribe([(topics.conv_up("+", UpKind.MSG, "+"), 1)])
            device = self.ctx.device_client(own)
            await device.connect()
            try:
                try:
                    await device.publish(forged_topic, b"forged", qos=1)
                    answer = "PUBACK"
                except PublishRefused as exc:
                    answer = f"refused: {exc}"
                except ConnectionLost:
                    answer = "connection closed"
                if device.disconnected.is_set():
                    await device.close()
                    device = self.ctx.device_client(own)
                    await device.connect()
                await device.publish(own_topic, b"own", qos=1)
            finally:
                await device.close()
            got = {m.topic for m in await watcher.drain(QUIET * 2)}
        if forged_topic in got:
            return failed(feature, "a publish as another user reached the services")
        if own_topic not in got:
            return failed(feature, f"its own publish did not arrive (forged one: {answer})")
        return passed(feature, f"forged publish dropped ({answer}); own publish delivered")

    async def read_own_only(self) -> Result:
        feature = "acl_read"
        own, other = (await self.devices())[:2]
        mine, theirs = topics.user_ack(own.user_id), topics.user_ack(other.user_id)
        device = self.ctx.device_client(own)
        await device.connect()
        try:
            try:
                (wide,) = await device.subscribe([("user/#", 1)])
                how = "refused" if wide >= 0x80 else "granted, yet filtered per message"
            except ConnectionLost:
                how = "answered by closing the connection"
            if device.disconnected.is_set():
                await device.close()
                device = self.ctx.device_client(own)
                await device.connect()
            (narrow,) = await device.subscribe([(topics.user_root(own.user_id), 1)])
            async with self.ctx.client("svc-pub") as publisher:
                await publisher.publish(theirs, b"theirs", qos=1)
                await publisher.publish(mine, b"mine", qos=1)
            got = {m.topic for m in await device.drain(QUIET * 2)}
        finally:
            await device.close()
        if theirs in got:
            return failed(feature, f"another user's topic was delivered (SUBSCRIBE user/# {how})")
        if mine not in got:
            return failed(feature, f"its own topic was not delivered (granted {narrow:#x})")
        return passed(feature, f"only user/<own id>/# delivered; SUBSCRIBE user/# {how}")

    async def client_id_bound(self) -> Result:
        feature = "client_id_bound"
        own, other = (await self.devices())[:2]
        try:
            async with self.ctx.device_client(own, client_id=other.client_id):
                return failed(feature, "a device's credentials logged in with another client id")
        except ConnectRefused as exc:
            return passed(feature, f"another client id refused ({exc})")
        except ConnectionLost as exc:
            return passed(feature, f"another client id: connection closed ({exc})")

    async def revocation(self) -> Result:
        feature = "revocation"
        victim = (await self.devices())[2]
        source = self.ctx.target.devices
        if source is None:
            raise NotSupported(self.ctx.target.no_devices_reason)
        async with self.ctx.device_client(victim) as device:
            started = time.monotonic()
            await source.revoke(victim)
            try:
                await asyncio.wait_for(device.disconnected.wait(), ARRIVAL)
            except TimeoutError:
                return failed(feature, f"still connected {ARRIVAL:.0f} s after the revoke")
            elapsed = (time.monotonic() - started) * 1000
        try:
            async with self.ctx.device_client(victim):
                return failed(feature, "dropped, but its credentials still log in")
        except (ConnectRefused, ConnectionLost):
            pass
        return passed(
            feature, f"connection closed {elapsed:.0f} ms after the revoke; login refused"
        )
