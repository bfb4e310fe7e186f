"""LiveKit access tokens: one per user per call, good for that call's room only.

Minting is local (an HS256 JWT signed with the API secret): no LiveKit server is
involved, so it works while LiveKit is unreachable. A call's events and retained
state hand a user the same token several times, so a minted token is reused for
the first half of its life (minting is most of an event's CPU otherwise).
"""

from __future__ import annotations

import time
from datetime import timedelta

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
        token = (
            api.AccessToken(self.api_key, self.api_secret)
            .with_identity(user_id)
            .with_name(display_name)
            .with_grants(api.VideoGrants(room_join=True, room=call_id))
            .with_ttl(self.ttl)
            .to_jwt()
        )
        join = LiveKitJoin(url=self.url, room=call_id, token=token)
        if len(self._minted) >= CACHE_MAX:
            self._forget_old(now)
        self._minted[key] = (now, join)
        return join

    def _forget_old(self, now: float) -> None:
        self._minted = {k: v for k, v in self._minted.items() if now - v[0] < self._reuse_for}
        if len(self._minted) >= CACHE_MAX:
            self._minted.clear()
