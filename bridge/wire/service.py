"""Service status: retained on `svc/{name}/{instance}/status`, Last Will says offline."""

from __future__ import annotations

from bridge.wire.base import WireModel


class ServiceStatus(WireModel):
    online: bool
    service: str
    instance: str
    since: str
