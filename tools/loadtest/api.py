"""HTTP API clients for many users, cheap to make and independent of each other.

Each user gets a `ChatHttp` with a transport (connection pool) of its own: one
pool shared by hundreds of users queued their requests in httpcore, which
re-scans every waiting request against every connection on each change
(quadratic), and that kept the event loop busy for minutes. What made one
client per user costly is its TLS context (loading the CA bundle: 40 ms of
CPU and more here); every transport here shares one context instead, though
the API is plain http on loopback and never uses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator

import httpx

from chatclient import ChatHttp


class ApiClients:
    """`client(token)` makes a user's client, closed by `aclose()`; `one_off(token)`
    one closed as soon as its block ends."""

    def __init__(self, api_url: str, timeout: float) -> None:
        self.api_url = api_url
        self.timeout = timeout
        self._tls = ssl.create_default_context()
        self._clients: list[ChatHttp] = []

    def _make(self, token: str | None) -> ChatHttp:
        transport = httpx.AsyncHTTPTransport(verify=self._tls)
        return ChatHttp(self.api_url, token, timeout=self.timeout, transport=transport)

    def client(self, token: str | None = None) -> ChatHttp:
        http = self._make(token)
        self._clients.append(http)
        return http

    @contextlib.asynccontextmanager
    async def one_off(self, token: str | None = None) -> AsyncIterator[ChatHttp]:
        http = self._make(token)
        try:
            yield http
        finally:
            await http.aclose()

    async def aclose(self) -> None:
        clients, self._clients = self._clients, []
        await asyncio.gather(*(c.aclose() for c in clients), return_exceptions=True)
