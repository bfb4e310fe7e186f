"""Presence payloads: what a device announces, and what its user's peers see."""

from __future__ import annotations

from bridge.wire.base import WireModel


class PresenceUp(WireModel):
    """`presence/{user_id}/{device_id}`, retained; the Last Will says offline."""

    online: bool


class PresenceEvent(WireModel):
    """`user/{uid}/presence` (an extension): a peer came online or went offline.

    `last_seen` is when the user was last online (null while online)."""

    user_id: str
    online: bool
    last_seen: str | None
