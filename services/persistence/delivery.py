"""Delivery after commit: stored messages to every member, and acks to the sender.

Used by the persistence service and by the API's HTTP send, so both paths
deliver the same way. Copies go out without waiting for each other; the caller
awaits them together before acknowledging its own inbound message.
"""

from __future__ import annotations

import asyncio

from bridge import topics
from bridge.mqtt import AsyncMqtt
from bridge.topics import UpKind
from bridge.wire.messaging import Ack, AckStatus, ErrorInfo
from services.persistence.store import Duplicate, Outcome, Rejected, Stored


def ack_for(conv_id: str, client_msg_id: str | None, outcome: Outcome) -> Ack:
    if isinstance(outcome, Rejected):
        return Ack(
            client_msg_id=client_msg_id,
            conv_id=conv_id,
            status="rejected",
            error=ErrorInfo(code=outcome.code, message=outcome.message),
        )
    status: AckStatus = "stored" if isinstance(outcome, Stored) else "duplicate"
    return Ack(
        client_msg_id=client_msg_id,
        conv_id=conv_id,
        status=status,
        id=outcome.message.id,
        seq=outcome.message.seq,
    )


def deliver_after_commit(mqtt: AsyncMqtt, stored: Stored) -> list[asyncio.Future[None]]:
    """Publish one committed message to every member (the sender's devices too)."""
    payload = stored.message.model_dump_json().encode()
    conv_id = stored.message.conv_id
    return [
        mqtt.publish(topics.user_conv(member, conv_id, UpKind.MSG), payload, qos=1)
        for member in stored.member_ids
    ]


def publish_ack(mqtt: AsyncMqtt, sender_id: str, ack: Ack) -> asyncio.Future[None]:
    return mqtt.publish(topics.user_ack(sender_id), ack.model_dump_json().encode(), qos=1)


def publish_outcome_after_commit(
    mqtt: AsyncMqtt, sender_id: str, conv_id: str, client_msg_id: str | None, outcome: Outcome
) -> list[asyncio.Future[None]]:
    """Deliver (if newly stored), then ack the sender. Duplicates are not re-delivered."""
    futures = deliver_after_commit(mqtt, outcome) if isinstance(outcome, Stored) else []
    futures.append(publish_ack(mqtt, sender_id, ack_for(conv_id, client_msg_id, outcome)))
    return futures


__all__ = ["Duplicate", "deliver_after_commit", "publish_ack", "publish_outcome_after_commit"]
