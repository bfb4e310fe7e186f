"""Delivery after commit: stored messages to every member, and acks to the sender.

Used by the persistence service and by the API's HTTP send, so both paths
deliver the same way. Copies go out without waiting for each other; the caller
awaits them together before acknowledging its own inbound message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from bridge import topics
from bridge.mqtt import AsyncMqtt
from bridge.topics import UpKind
from bridge.wire.messaging import Ack, AckStatus, ErrorInfo, PushCandidate, StoredMessage
from core import metrics
from services.persistence.store import Duplicate, Outcome, Rejected, Stored

PUSH_RECIPIENTS_PER_NOTICE = 1000


def count_outcome(outcome: Outcome) -> None:
    if isinstance(outcome, Rejected):
        metrics.SENDS.labels("rejected").inc()
        metrics.SEND_REJECTIONS.labels(outcome.code).inc()
    else:
        metrics.SENDS.labels("stored" if isinstance(outcome, Stored) else "duplicate").inc()


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


def deliver_after_commit(
    mqtt: AsyncMqtt,
    message: StoredMessage,
    member_ids: Iterable[str],
    away_ids: Iterable[str] | None = None,
) -> list[asyncio.Future[None]]:
    """Publish one committed message to every member (the sender's devices too),
    and once to the push service, for the members who may be offline: `away_ids`
    when the store looked them up (none: no notice at all), else every other
    member (the push service checks)."""
    payload = message.model_dump_json().encode()
    members = list(member_ids)
    copies = [
        mqtt.publish(topics.user_conv(member, message.conv_id, UpKind.MSG), payload, qos=1)
        for member in members
    ]
    candidates = members if away_ids is None else away_ids
    recipients = [m for m in candidates if m != message.sender_id]
    # In slices: a large group's member list would not fit one MQTT packet.
    for start in range(0, len(recipients), PUSH_RECIPIENTS_PER_NOTICE):
        candidate = PushCandidate(
            message=message, recipients=recipients[start : start + PUSH_RECIPIENTS_PER_NOTICE]
        )
        copies.append(mqtt.publish(topics.push_message(), candidate.model_dump_json().encode()))
    return copies


def publish_ack(mqtt: AsyncMqtt, sender_id: str, ack: Ack) -> asyncio.Future[None]:
    return mqtt.publish(topics.user_ack(sender_id), ack.model_dump_json().encode(), qos=1)


def to_deliver(
    outcome: Outcome,
) -> tuple[StoredMessage, tuple[str, ...], tuple[str, ...] | None] | None:
    """The message, its recipients and those away (None: not known), if this
    outcome still needs delivering."""
    if isinstance(outcome, Stored):
        return outcome.message, outcome.member_ids, outcome.away_ids
    if isinstance(outcome, Duplicate) and outcome.redeliver_to:
        return outcome.message, outcome.redeliver_to, None
    return None
