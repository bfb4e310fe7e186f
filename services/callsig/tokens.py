"""LiveKit access tokens: one per user per call, good for that call's room only.

Minting is local (an HS256 JWT signed with the API secret): no LiveKit server is
involved, so it costs microseconds and works while LiveKit is unreachable.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from livekit import api

from bridge.wire.calls import LiveKitJoin
from core.config import Settings


@dataclass(frozen=True, slots=True)
class TokenMinter:
    url: str
    api_key: str
    api_secret: str
    ttl: timedelta

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
        token = (
            api.AccessToken(self.api_key, self.api_secret)
            .with_identity(user_id)
            .with_name(display_name)
            .with_grants(api.VideoGrants(room_join=True, room=call_id))
            .with_ttl(self.ttl)
            .to_jwt()
        )
        return LiveKitJoin(url=self.url, room=call_id, token=token)
