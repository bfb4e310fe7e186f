"""LiveKit webhooks as callsig reads them.

The API verifies each webhook's signature (api/routes/livekit.py) and forwards
the body unchanged on `livekit/webhook`, which only services may publish to;
here it becomes the few facts the state machine uses.
"""

from __future__ import annotations

import logging

from google.protobuf import json_format
from livekit.protocol.webhook import WebhookEvent

from core.ids import is_valid_id
from services.callsig.livekit_events import LiveKitUpdate
from services.callsig.livekit_server import recording_of

log = logging.getLogger(__name__)

HANDLED = frozenset(
    {
        "participant_joined",
        "participant_left",
        "participant_connection_aborted",
        "room_finished",
        "egress_started",
        "egress_updated",
        "egress_ended",
    }
)


def update_from_webhook(body: bytes) -> LiveKitUpdate | None:
    """The update a webhook body carries, or None when it concerns no call."""
    try:
        event = json_format.Parse(body, WebhookEvent(), ignore_unknown_fields=True)
    except json_format.ParseError as error:
        log.warning("unreadable LiveKit webhook: %s", error)
        return None
    if event.event not in HANDLED:
        return None
    if event.event.startswith("egress_"):
        recording = recording_of(event.egress_info)
        call_id = event.egress_info.room_name
        if not is_valid_id(call_id):
            return None
        return LiveKitUpdate(
            event_id=event.id,
            event=event.event,
            call_id=call_id,
            egress_id=recording.egress_id,
            recording=recording.status,
            location=recording.location,
        )
    if not is_valid_id(event.room.name):
        return None  # not a room of ours (room names are call ids)
    return LiveKitUpdate(
        event_id=event.id,
        event=event.event,
        call_id=event.room.name,
        identity=event.participant.identity or None,
    )
