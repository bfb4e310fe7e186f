"""Device credentials, provisioned at run time through the dynamic security plugin.

Commands go to `$CONTROL/dynamic-security/v1` and each answer comes back on
`.../response` carrying the `correlationData` we sent, so concurrent requests
never mix. Deleting a client makes the broker drop its open connections at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from typing import Any

from bridge import acl, topics
from bridge.mqtt import AsyncMqtt, MqttError

log = logging.getLogger(__name__)


class ProvisioningError(MqttError):
    """The broker refused a command, or did not answer in time."""


ALREADY_EXISTS = ("already exists",)


class Provisioner:
    def __init__(self, mqtt: AsyncMqtt, *, timeout: float = 5.0) -> None:
        self._mqtt = mqtt
        self._timeout = timeout
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        codes = await self._mqtt.subscribe([(topics.DYNSEC_RESPONSE, 0)])
        if codes[0] >= 0x80:
            raise ProvisioningError("not allowed to manage the broker's dynamic security")
        self._reader = asyncio.create_task(self._read_responses(), name="dynsec-responses")
        await self._ensure_support_roles()

    async def _ensure_support_roles(self) -> None:
        """The operators' roles; created here (not only in the initial dynsec
        file) so a broker set up by an older release gets them too."""
        responses = await self.execute(
            {
                "command": "createRole",
                "rolename": acl.OPERATOR_ROLE,
                "acls": acl.operator_role_acls(),
            },
            {
                "command": "createRole",
                "rolename": acl.SUPERVISOR_ROLE,
                "acls": acl.supervisor_role_acls(),
            },
        )
        for response in responses:
            self._check(response, tolerate=ALREADY_EXISTS)

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            # gather, not suppress(CancelledError): a cancellation of stop() itself
            # must go on up.
            await asyncio.gather(self._reader, return_exceptions=True)

    async def _read_responses(self) -> None:
        async for message in self._mqtt.messages():
            if message.topic != topics.DYNSEC_RESPONSE:
                continue
            try:
                responses = json.loads(message.payload)["responses"]
            except (ValueError, KeyError, TypeError):
                log.warning("unreadable dynsec response: %r", message.payload[:200])
                continue
            for response in responses:
                future = self._waiting.pop(str(response.get("correlationData")), None)
                if future is not None and not future.done():
                    future.set_result(response)

    async def execute(self, *commands: dict[str, Any]) -> list[dict[str, Any]]:
        """Run commands in one request; returns one response per command, in order."""
        loop = asyncio.get_running_loop()
        futures = []
        tagged = []
        for command in commands:
            tag = secrets.token_hex(8)
            future: asyncio.Future[dict[str, Any]] = loop.create_future()
            self._waiting[tag] = future
            futures.append(future)
            tagged.append({**command, "correlationData": tag})
        payload = json.dumps({"commands": tagged})
        try:
            await asyncio.wait_for(
                self._mqtt.publish(topics.DYNSEC_REQUEST, payload), self._timeout
            )
            return list(await asyncio.wait_for(asyncio.gather(*futures), self._timeout))
        except (TimeoutError, MqttError) as exc:
            raise ProvisioningError(f"broker did not answer: {exc!r}") from exc
        finally:
            for command in tagged:
                self._waiting.pop(command["correlationData"], None)

    @staticmethod
    def _check(response: dict[str, Any], *, tolerate: tuple[str, ...] = ()) -> None:
        error = response.get("error")
        if error and not any(text in str(error).lower() for text in tolerate):
            raise ProvisioningError(f"{response.get('command')}: {error}")

    async def create_device(
        self, user_id: str, device_id: str, password: str, extra_roles: list[str] | None = None
    ) -> None:
        """The user's role (created on first use) and a client bound to
        `device_id`, with `extra_roles` (operators') beside it."""
        role = acl.user_role_name(user_id)
        roles = [{"rolename": role}, *({"rolename": r} for r in extra_roles or [])]
        create_role, create_client = await self.execute(
            {"command": "createRole", "rolename": role, "acls": acl.user_role_acls(user_id)},
            {
                "command": "createClient",
                "username": device_id,
                "password": password,
                "clientid": device_id,
                "roles": roles,
            },
        )
        self._check(create_role, tolerate=ALREADY_EXISTS)
        self._check(create_client)

    async def delete_device(self, device_id: str) -> None:
        """Remove the device's credentials; the broker drops its connections now."""
        (response,) = await self.execute({"command": "deleteClient", "username": device_id})
        self._check(response, tolerate=("not found",))
