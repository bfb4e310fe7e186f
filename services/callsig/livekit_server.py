"""LiveKit's server API as callsig uses it: close a call's room, record a call.

Through the official client (`livekit.api.LiveKitAPI`, Twirp over HTTP). Every
call is bounded by a timeout and reports failure as `LiveKitUnavailable`, so a
LiveKit outage delays room cleanup (retried by the sweep) and refuses a
recording, but never blocks signaling.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import aiohttp
from livekit import api
from livekit.protocol.egress import (
    EgressInfo,
    EgressStatus,
    EncodedFileOutput,
    RoomCompositeEgressRequest,
    StopEgressRequest,
)
from livekit.protocol.room import DeleteRoomRequest

from bridge.wire.calls import RecordingStatus
from core.config import Settings

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 5.0

# LiveKit's egress states, as the call's `recording_status`.
RECORDING_STATUS: dict[int, RecordingStatus] = {
    EgressStatus.EGRESS_STARTING: "starting",
    EgressStatus.EGRESS_ACTIVE: "active",
    EgressStatus.EGRESS_ENDING: "ending",
    EgressStatus.EGRESS_COMPLETE: "complete",
    EgressStatus.EGRESS_FAILED: "failed",
    EgressStatus.EGRESS_ABORTED: "failed",
    EgressStatus.EGRESS_LIMIT_REACHED: "complete",
}


class LiveKitUnavailable(Exception):
    """LiveKit did not do what was asked (unreachable, refused, or timed out)."""


@dataclass(frozen=True, slots=True)
class Recording:
    egress_id: str
    status: RecordingStatus
    location: str | None


def recording_of(info: EgressInfo) -> Recording:
    location = None
    if info.file_results:
        location = info.file_results[0].location or info.file_results[0].filename
    return Recording(info.egress_id, RECORDING_STATUS.get(info.status, "starting"), location)


class LiveKitServer:
    """Create inside the running event loop (the client holds an aiohttp session)."""

    def __init__(self, settings: Settings) -> None:
        self._api = api.LiveKitAPI(
            settings.effective_livekit_api_url,
            settings.livekit_api_key,
            settings.livekit_api_secret,
        )
        self._filepath = settings.recording_filepath

    async def close(self) -> None:
        await self._api.aclose()

    async def close_room(self, call_id: str) -> None:
        """Delete the call's room, disconnecting anyone still in it. A room that
        does not exist (nobody ever joined, or it closed itself) is closed."""
        try:
            async with asyncio.timeout(TIMEOUT_SECONDS):
                await self._api.room.delete_room(DeleteRoomRequest(room=call_id))
        except api.TwirpError as error:
            if error.code == api.TwirpErrorCode.NOT_FOUND:
                return
            raise LiveKitUnavailable(
                f"DeleteRoom {call_id}: {error.code} {error.message}"
            ) from error
        except (aiohttp.ClientError, TimeoutError) as error:
            raise LiveKitUnavailable(f"DeleteRoom {call_id}: {error!r}") from error

    async def start_recording(self, call_id: str, *, audio_only: bool) -> Recording:
        request = RoomCompositeEgressRequest(
            room_name=call_id,
            audio_only=audio_only,
            file_outputs=[EncodedFileOutput(filepath=self._filepath)],
        )
        try:
            async with asyncio.timeout(TIMEOUT_SECONDS):
                info = await self._api.egress.start_room_composite_egress(request)
        except api.TwirpError as error:
            raise LiveKitUnavailable(
                f"recording {call_id}: {error.code} {error.message}"
            ) from error
        except (aiohttp.ClientError, TimeoutError) as error:
            raise LiveKitUnavailable(f"recording {call_id}: {error!r}") from error
        return recording_of(info)

    async def stop_recording(self, egress_id: str) -> None:
        """Ask the recorder to stop; the final status arrives as webhooks. One
        that already stopped is stopped."""
        try:
            async with asyncio.timeout(TIMEOUT_SECONDS):
                await self._api.egress.stop_egress(StopEgressRequest(egress_id=egress_id))
        except api.TwirpError as error:
            if error.code in (
                api.TwirpErrorCode.FAILED_PRECONDITION,
                api.TwirpErrorCode.NOT_FOUND,
            ):
                return
            raise LiveKitUnavailable(f"StopEgress {egress_id}: {error.code}") from error
        except (aiohttp.ClientError, TimeoutError) as error:
            raise LiveKitUnavailable(f"StopEgress {egress_id}: {error!r}") from error
