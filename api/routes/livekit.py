"""LiveKit's webhooks: verified here, handled by callsig.

LiveKit signs each webhook: the `Authorization` header is a JWT issued by our
API key whose `sha256` claim is the hash of the raw body. A webhook that does
not verify gets 401 and goes nowhere. One that does is forwarded unchanged to
callsig on `livekit/webhook` (only services may publish there); the answer is
200 once the broker holds it, so LiveKit retries whatever we did not take.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from google.protobuf import json_format
from livekit import api

from api.deps import StateDep
from api.errors import ApiError
from bridge import topics

router = APIRouter(prefix="/v1/livekit", tags=["calls"])

FORWARD_TIMEOUT_SECONDS = 5.0


@router.post("/webhook")
async def livekit_webhook(request: Request, state: StateDep) -> dict[str, str]:
    authorization = request.headers.get("authorization")
    if not authorization:
        raise ApiError(401, "unauthorized", "missing LiveKit signature")
    body = await request.body()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ApiError(422, "invalid_payload", "webhook body is not UTF-8") from error
    settings = state.settings
    receiver = api.WebhookReceiver(
        api.TokenVerifier(settings.livekit_api_key, settings.livekit_api_secret)
    )
    try:
        event = receiver.receive(text, authorization)
    except json_format.ParseError as error:
        raise ApiError(422, "invalid_payload", f"not a LiveKit webhook: {error}") from error
    except Exception as error:
        # jwt's errors for the token, and a bare Exception from the SDK for a
        # body that does not match its hash: all mean "not from our LiveKit".
        raise ApiError(401, "unauthorized", "LiveKit signature does not verify") from error
    try:
        await asyncio.wait_for(
            state.mqtt.publish(topics.livekit_webhook(), body, qos=1), FORWARD_TIMEOUT_SECONDS
        )
    except TimeoutError as error:
        raise ApiError(503, "unavailable", "broker did not take the webhook") from error
    return {"status": "accepted", "event": event.event}
