"""Phones for call tests: users with one or more connected devices (ChatClient),
made through the real API, and a checker for the LiveKit tokens they receive."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from livekit import api

from bridge.mqtt import AsyncMqtt, Endpoint
from bridge.wire.calls import LiveKitJoin
from chatclient import ChatClient, ChatHttp
from core.config import Settings
from tools.stack import Stack

DEFAULTS = Settings()


@dataclass
class Phone:
    user_id: str
    name: str
    http: ChatHttp
    devices: list[ChatClient]

    @property
    def device(self) -> ChatClient:
        return self.devices[0]

    async def converse_with(self, *others: Phone) -> str:
        conversation = await self.http.create_conversation([o.user_id for o in others])
        return str(conversation["conv_id"])


@contextlib.asynccontextmanager
async def phone(api_url: str, name: str, devices: int = 1) -> AsyncIterator[Phone]:
    display = f"{name.title()} {secrets.token_hex(2)}"
    async with ChatHttp(api_url) as http, contextlib.AsyncExitStack() as clients:
        session = await http.register(f"{name}_{secrets.token_hex(4)}", "correct horse", display)
        connected = []
        for _ in range(devices):
            creds = await http.create_device("ios")
            client = ChatClient(creds, session.user_id, http=http)
            connected.append(await clients.enter_async_context(client))
        yield Phone(session.user_id, display, http, connected)


def assert_token_for(join: LiveKitJoin | None, call_id: str, who: Phone, stack: Stack) -> None:
    """A real LiveKit token: signed with the stack's secret, for this room only,
    as this user."""
    assert join is not None
    assert join.room == call_id and join.url == DEFAULTS.livekit_url
    verifier = api.TokenVerifier(stack.config.livekit_api_key, stack.config.livekit_api_secret)
    claims = verifier.verify(join.token)
    assert claims.identity == who.user_id
    assert claims.name == who.name
    assert claims.video is not None
    assert claims.video.room == call_id and claims.video.room_join is True


def service_watcher(stack: Stack, client_id: str) -> AsyncMqtt:
    """A connection with the services' account, to watch topics no user may read."""
    accounts = stack.config.accounts
    return AsyncMqtt(
        Endpoint("127.0.0.1", stack.config.tcp_port),
        client_id=client_id,
        username=accounts.service_username,
        password=accounts.service_password,
        clean_start=True,
        reconnect=False,
    )


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until `check()` holds (for state kept outside the event loop)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.02)
