"""LiveKit access tokens: one per user per call, good for that call's room only.

Minting is local (an HS256 JWT signed with the API secret): no LiveKit server is
involved, so it works while LiveKit is unreachable. A call's events and retained
state hand a user the same token several times, so a minted token is reused for
the first half of its life (minting is most of an event's CPU otherwise).

The claims are livekit-api's own: it builds a join grant's claims once, and
each token is a copy with the room, the user and the times set, signed with
PyJWT as livekit-api signs them. Why not `AccessToken.to_jwt()` per token: it
converts its dataclasses anew every time, and with the service idle between
calls (their code out of the processor's caches) a token took 0.46-0.49 ms that
way and 0.31 ms this way, on the path from invite to the callee's `incoming`.
tests/unit/test_call_tokens.py checks that both decode to the same claims.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import jwt
from livekit import api

from bridge.wire.calls import LiveKitJoin
from core.config import Settings

CACHE_MAX = 10_000


class TokenMinter:
    def __init__(self, url: str, api_key: str, api_secret: str, ttl: timedelta) -> None:
        self.url = url
        self.api_key = api_key
        self.api_secret = api_secret
        self.ttl = ttl
        self._reuse_for = ttl.total_seconds() / 2
        # A join grant's claims, without room, user or times: built once.
        join_grant = api.AccessToken(api_key, api_secret).with_grants(
            api.VideoGrants(room_join=True)
        )
        self._claims: dict[str, Any] = join_grant.claims.asdict()
        self._minted: dict[tuple[str, str, str], tuple[float, LiveKitJoin]] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenMinter:
        return cls(
            url=settings.livekit_url,
            api_key=settings.livekit_api_key,
            api_secret=settings.livekit_api_secret,
            ttl=timedelta(seconds=settings.livekit_token_ttl_seconds),
        )

    def join(self, call_id: str, user_id: str, display_name: str) -> LiveKitJoin:
        """The room is the call id; the identity (`sub`) the user id."""
        key = (call_id, user_id, display_name)
        now = time.monotonic()
        cached = self._minted.get(key)
        if cached is not None and now - cached[0] < self._reuse_for:
            return cached[1]
        join = LiveKitJoin(
            url=self.url, room=call_id, token=self._mint(call_id, user_id, display_name)
        )
        if len(self._minted) >= CACHE_MAX:
            self._forget_old(now)
        self._minted[key] = (now, join)
        return join

    def _mint(self, room: str, identity: str, name: str) -> str:
        # As AccessToken.to_jwt(): whole seconds, empty values left out.
        issued = int(time.time())
        claims = {
            **self._claims,
            "video": {**self._claims["video"], "room": room},
            "sub": identity,
            "iss": self.api_key,
            "nbf": issued,
            "exp": issued + int(self.ttl.total_seconds()),
        }
        if name:
            claims["name"] = name
        return jwt.encode(claims, self.api_secret, algorithm="HS256")

    def _forget_old(self, now: float) -> None:
        self._minted = {k: v for k, v in self._minted.items() if now - v[0] < self._reuse_for}
        if len(self._minted) >= CACHE_MAX:
            self._minted.clear()
