"""A TEST DOUBLE of LiveKit, the third-party media server the calls feature talks to.

Why a double: the test machines cannot run a LiveKit server. LiveKit ships as a Go
server binary from its own release site (PyPI, Debian and npm do not package it), and
its Egress recorder also needs Redis, headless Chrome and GStreamer. So the project's
tests run against this local HTTP server instead; docs/calls.md says how to run the
system against a real LiveKit.

What makes it worth testing against: it speaks LiveKit's REAL wire format, so the
project's production path - the official `livekit-api` client, unchanged - is exercised:

* Twirp over HTTP: `POST /twirp/livekit.RoomService/<Method>` and
  `POST /twirp/livekit.Egress/<Method>`, bodies are the real `livekit-protocol` protobuf
  messages (`Content-Type: application/protobuf`; Twirp's JSON variant is accepted too),
  errors are Twirp's JSON `{"code": ..., "msg": ...}` with Twirp's HTTP statuses.
* Auth: every request must carry `Authorization: Bearer <JWT>` signed with the API secret,
  checked with the SDK's own `TokenVerifier` plus the grant each method needs.
* Webhooks: `signed_webhook` produces a body and `Authorization` value exactly as a LiveKit
  server signs them, so the project's receiver can be tested with the SDK's
  `WebhookReceiver`.

Behaviour copied from livekit-server's source (pkg/service: auth.go, roomservice.go,
egress.go, utils.go), including where it is surprising:

* A token that does not verify (bad signature, unknown key, expired) or an Authorization
  header without "Bearer " is refused by LiveKit's HTTP middleware with 401 and a PLAIN
  TEXT body, not Twirp JSON. The Python client then raises `TwirpError` with
  code "unknown", an empty message and status 401.
* A missing grant (and a request with no Authorization header at all) is refused by the
  service as Twirp `unauthenticated` / 401 with msg "permissions denied" - LiveKit never
  answers `permission_denied`/403 here. Grants: CreateRoom and DeleteRoom need roomCreate,
  ListRooms needs roomList (the client signs only that one), participant methods need
  roomAdmin for the named room, Egress methods need roomRecord.
* API secrets shorter than 32 characters are refused at construction, as LiveKit refuses
  to start with one.
* DeleteRoom of an unknown room: `not_found` / 404, "requested room does not exist".
  CreateRoom of an existing room returns the existing room unchanged.
* RemoveParticipant of an unknown participant: `not_found`, "participant not found";
  ListParticipants of an unknown room: an empty list.
* Egress, with its lifecycle compressed to no wait: StartRoomCompositeEgress answers the
  worker's EGRESS_STARTING (unknown room: `not_found`) while the stored egress is
  EGRESS_ACTIVE at once; StopEgress answers EGRESS_ENDING while the stored egress becomes
  EGRESS_COMPLETE with its file result (`file_results`; the deprecated `file` field is not
  set); stopping it again is `failed_precondition`, an unknown id `not_found`. Deleting a
  room completes its live egresses, as the recorder stops when its room closes.

Not simulated: media, WebRTC signalling, webhook delivery (tests post `signed_webhook`
output themselves), region failover (`/settings/regions`; the client only fails over for
LiveKit Cloud hosts anyway, so a 5xx here reaches the caller on the first attempt).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import string
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import jwt
from google.protobuf.json_format import MessageToDict, MessageToJson, Parse, ParseError
from google.protobuf.message import DecodeError, Message
from livekit import api
from livekit.api.access_token import Claims
from livekit.protocol.egress import (
    EgressInfo,
    EgressStatus,
    EncodedFileType,
    FileInfo,
    ListEgressRequest,
    ListEgressResponse,
    RoomCompositeEgressRequest,
    StopEgressRequest,
)
from livekit.protocol.models import ParticipantInfo, Room
from livekit.protocol.room import (
    CreateRoomRequest,
    DeleteRoomRequest,
    DeleteRoomResponse,
    ListParticipantsRequest,
    ListParticipantsResponse,
    ListRoomsRequest,
    ListRoomsResponse,
    RemoveParticipantResponse,
    RoomParticipantIdentity,
)
from livekit.protocol.webhook import WebhookEvent

from tools.http_double import DoubleServer, ServedInThread

M = TypeVar("M", bound=Message)

# The media type a LiveKit server posts webhooks with (a custom one, so that receivers
# check the signature before parsing).
WEBHOOK_CONTENT_TYPE = "application/webhook+json"

# Event names a LiveKit server sends; make_event refuses others to catch typos in tests.
WEBHOOK_EVENTS = frozenset(
    {
        "room_started",
        "room_finished",
        "participant_joined",
        "participant_left",
        "participant_connection_aborted",
        "track_published",
        "track_unpublished",
        "egress_started",
        "egress_updated",
        "egress_ended",
        "ingress_started",
        "ingress_ended",
    }
)

# LiveKit server defaults (config room.empty_timeout / room.departure_timeout), applied
# when CreateRoom leaves them at 0.
DEFAULT_EMPTY_TIMEOUT_S = 300
DEFAULT_DEPARTURE_TIMEOUT_S = 20
MIN_SECRET_LENGTH = 32

# Twirp's error code -> HTTP status table (Twirp spec v7).
TWIRP_STATUS = {
    "canceled": 408,
    "unknown": 500,
    "invalid_argument": 400,
    "malformed": 400,
    "deadline_exceeded": 408,
    "not_found": 404,
    "bad_route": 404,
    "already_exists": 409,
    "permission_denied": 403,
    "unauthenticated": 401,
    "resource_exhausted": 429,
    "failed_precondition": 412,
    "aborted": 409,
    "out_of_range": 400,
    "unimplemented": 501,
    "internal": 500,
    "unavailable": 503,
    "dataloss": 500,
}

_LIVE_EGRESS = (
    EgressStatus.EGRESS_STARTING,
    EgressStatus.EGRESS_ACTIVE,
    EgressStatus.EGRESS_ENDING,
)
_GUID_ALPHABET = string.ascii_letters + string.digits


# ---------------------------------------------------------------- routes and grants


def _can_create(video: api.VideoGrants, _request: Any) -> bool:
    return bool(video.room_create)


def _can_list(video: api.VideoGrants, _request: Any) -> bool:
    return bool(video.room_list)


def _can_admin(video: api.VideoGrants, request: Any) -> bool:
    # LiveKit scopes roomAdmin to the one room named in the token.
    return bool(video.room_admin) and video.room == request.room


def _can_record(video: api.VideoGrants, _request: Any) -> bool:
    return bool(video.room_record)


@dataclass(frozen=True)
class _Route:
    service: str
    method: str
    request_type: type[Message]
    allowed: Callable[[api.VideoGrants, Any], bool]


_ROUTES = {
    route.method: route
    for route in (
        _Route("RoomService", "CreateRoom", CreateRoomRequest, _can_create),
        _Route("RoomService", "ListRooms", ListRoomsRequest, _can_list),
        _Route("RoomService", "DeleteRoom", DeleteRoomRequest, _can_create),
        _Route("RoomService", "ListParticipants", ListParticipantsRequest, _can_admin),
        _Route("RoomService", "RemoveParticipant", RoomParticipantIdentity, _can_admin),
        _Route("Egress", "StartRoomCompositeEgress", RoomCompositeEgressRequest, _can_record),
        _Route("Egress", "StopEgress", StopEgressRequest, _can_record),
        _Route("Egress", "ListEgress", ListEgressRequest, _can_record),
    )
}
METHODS = frozenset(_ROUTES)


# ---------------------------------------------------------------- HTTP plumbing


@dataclass(frozen=True)
class _HttpRequest:
    verb: str
    path: str
    authorization: str | None
    content_type: str
    body: bytes


@dataclass(frozen=True)
class _Reply:
    status: int
    content_type: str
    body: bytes


class _Refusal(Exception):
    """Aborts a request with a ready reply (a Twirp error or LiveKit's plain-text 401)."""

    def __init__(self, reply: _Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


def _twirp_error(
    code: str, msg: str, *, status: int | None = None, meta: dict[str, str] | None = None
) -> _Refusal:
    payload: dict[str, Any] = {"code": code, "msg": msg}
    if meta:
        payload["meta"] = meta
    body = json.dumps(payload).encode()
    return _Refusal(_Reply(status or TWIRP_STATUS[code], "application/json", body))


def _plain_unauthorized(text: str) -> _Refusal:
    # What LiveKit's auth middleware writes (Go sniffs the type of a bare Write as text).
    return _Refusal(_Reply(401, "text/plain; charset=utf-8", text.encode()))


def _bad_route(msg: str, request: _HttpRequest) -> _Refusal:
    return _twirp_error(
        "bad_route", msg, meta={"twirp_invalid_route": f"{request.verb} {request.path}"}
    )


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _route(request: _HttpRequest) -> _Route:
    """Twirp's routing: POST only, to `/twirp/livekit.<Service>/<Method>`, a known body type."""
    if request.verb != "POST":
        raise _bad_route(f'unsupported method "{request.verb}" (only POST is allowed)', request)
    prefix, _, method = urlsplit(request.path).path.rpartition("/")
    route = _ROUTES.get(method)
    if route is None or prefix != f"/twirp/livekit.{route.service}":
        raise _bad_route(f'no handler for path "{request.path}"', request)
    if _media_type(request.content_type) not in ("application/protobuf", "application/json"):
        raise _bad_route(f'unexpected Content-Type: "{request.content_type}"', request)
    return route


def _decode(route: _Route, request: _HttpRequest) -> Message:
    message = route.request_type()
    try:
        if _media_type(request.content_type) == "application/json":
            Parse(request.body.decode(), message)
        else:
            message.ParseFromString(request.body)
    except (DecodeError, ParseError, UnicodeDecodeError) as exc:
        raise _twirp_error("malformed", "the request could not be decoded") from exc
    return message


def _encode(response: Message, request: _HttpRequest) -> _Reply:
    # Twirp answers in the encoding it was asked in.
    if _media_type(request.content_type) == "application/json":
        return _Reply(200, "application/json", MessageToJson(response).encode())
    return _Reply(200, "application/protobuf", response.SerializeToString())


class _Handler(BaseHTTPRequestHandler):
    # One request per connection: stop() never waits on an idle keep-alive socket.
    protocol_version = "HTTP/1.0"

    def do_POST(self) -> None:
        self._serve()

    # Other verbs are served too, so that Twirp's routing refuses them with bad_route.
    def do_GET(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        request = _HttpRequest(
            verb=self.command,
            path=self.path,
            authorization=self.headers.get("Authorization"),
            content_type=self.headers.get("Content-Type", ""),
            body=self.rfile.read(length),
        )
        reply = cast(DoubleServer[LiveKitDouble], self.server).double._handle(request)
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:
        # Quiet: a line per request on stderr would bury test output.
        return


# ---------------------------------------------------------------- small helpers


def _guid(prefix: str) -> str:
    """An id shaped like LiveKit's (`RM_`, `EG_`, `PA_`, `EV_` + 12 base62 characters)."""
    return prefix + "".join(secrets.choice(_GUID_ALPHABET) for _ in range(12))


def _copy(message: M) -> M:
    # Callers get copies so that they can never mutate the double's state by accident.
    clone = type(message)()
    clone.CopyFrom(message)
    return clone


def _is_live(info: EgressInfo) -> bool:
    return info.status in _LIVE_EGRESS


def _output_filename(request: RoomCompositeEgressRequest, room_name: str, started_ns: int) -> str:
    """The file the recorder would write: the request's filepath template, expanded."""
    outputs = list(request.file_outputs)
    if not outputs and request.HasField("file"):
        outputs = [request.file]
    template = outputs[0].filepath if outputs and outputs[0].filepath else "{room_name}-{time}"
    stamp = time.strftime("%Y-%m-%dT%H%M%S", time.gmtime(started_ns / 1e9))
    name = template.replace("{room_name}", room_name).replace("{time}", stamp)
    audio_only = request.audio_only or any(o.file_type == EncodedFileType.OGG for o in outputs[:1])
    extension = ".ogg" if audio_only else ".mp4"
    return name if "." in name.rsplit("/", 1)[-1] else name + extension


def _requests_file(request: RoomCompositeEgressRequest) -> bool:
    return bool(request.file_outputs) or request.HasField("file")


def sign_webhook(event: WebhookEvent, api_key: str, api_secret: str) -> tuple[bytes, str]:
    """Body and Authorization value of a webhook, signed as LiveKit's URLNotifier does.

    The body is the event's protobuf JSON (camelCase names, int64 as strings, compact);
    the Authorization header is the bare JWT - no "Bearer " prefix - issued by the API
    key, valid five minutes, whose `sha256` claim is the base64 SHA-256 of the body.
    """
    body = json.dumps(MessageToDict(event), separators=(",", ":"), ensure_ascii=False).encode()
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    token = (
        api.AccessToken(api_key, api_secret)
        .with_ttl(timedelta(minutes=5))
        .with_sha256(digest)
        .to_jwt()
    )
    return body, token


# ---------------------------------------------------------------- the double


class LiveKitDouble(ServedInThread):
    """LiveKit's RoomService and Egress Twirp APIs on 127.0.0.1, in a background thread.

    Usable from synchronous fixtures and while an asyncio loop runs in the same process.
    Blocking helpers (`wait_for_call`) must be called off the loop, e.g. through
    `anyio.to_thread.run_sync`, since the client they wait for runs on it.
    """

    def __init__(self, api_key: str, api_secret: str) -> None:
        super().__init__(_Handler)
        if len(api_secret) < MIN_SECRET_LENGTH:
            # LiveKit refuses to start with such a secret, and PyJWT warns about it (an
            # error under `-W error`, raised on the server thread where it is hard to read).
            raise ValueError(f"API secret must be at least {MIN_SECRET_LENGTH} characters")
        self.api_key = api_key
        self.api_secret = api_secret
        self._verifier = api.TokenVerifier(api_key, api_secret)
        # One condition guards all state; wait_for_call waits on it for new calls.
        self._cond = threading.Condition()
        self._rooms: dict[str, Room] = {}
        self._participants: dict[str, dict[str, ParticipantInfo]] = {}
        self._egresses: dict[str, EgressInfo] = {}
        self._calls: list[tuple[str, Message]] = []
        self._faults: dict[str, deque[tuple[str, int]]] = {}
        self._handlers: dict[str, Callable[[Any], Message]] = {
            "CreateRoom": self._create_room,
            "ListRooms": self._list_rooms,
            "DeleteRoom": self._delete_room,
            "ListParticipants": self._list_participants,
            "RemoveParticipant": self._remove_participant,
            "StartRoomCompositeEgress": self._start_room_composite_egress,
            "StopEgress": self._stop_egress,
            "ListEgress": self._list_egress,
        }

    # -- lifecycle

    # -- what tests inspect and arrange

    @property
    def calls(self) -> list[tuple[str, Message]]:
        """Every request that named a served method and decoded, in arrival order, whatever
        its outcome (refused for auth, failed by `fail_next`, or served)."""
        with self._cond:
            return [(method, _copy(request)) for method, request in self._calls]

    def calls_to(self, method: str) -> list[Message]:
        _check_method(method)
        return [request for name, request in self.calls if name == method]

    def wait_for_call(self, method: str, timeout: float = 5.0, *, count: int = 1) -> Message:
        """Block until `count` calls to `method` were seen; return the `count`-th request."""
        _check_method(method)
        with self._cond:
            seen = self._cond.wait_for(
                lambda: sum(name == method for name, _ in self._calls) >= count, timeout
            )
            if not seen:
                names = [name for name, _ in self._calls]
                raise TimeoutError(f"{count} call(s) to {method} not seen in {timeout}s: {names}")
        return self.calls_to(method)[count - 1]

    def fail_next(
        self, method: str, code: str = "unavailable", status: int = 503, times: int = 1
    ) -> None:
        """Answer the next `times` calls to `method` with Twirp error `code` / `status`."""
        _check_method(method)
        with self._cond:
            self._faults.setdefault(method, deque()).extend([(code, status)] * times)

    @property
    def rooms(self) -> dict[str, Room]:
        with self._cond:
            return {name: _copy(room) for name, room in self._rooms.items()}

    @property
    def egresses(self) -> dict[str, EgressInfo]:
        with self._cond:
            return {egress_id: _copy(info) for egress_id, info in self._egresses.items()}

    def add_participant(
        self, room: str, identity: str, *, name: str = "", auto_create: bool = False
    ) -> ParticipantInfo:
        """Put a participant in a room, as if a client had joined over WebRTC. With
        `auto_create` a missing room is made first, as LiveKit does by default
        when a client joins a room that does not exist yet."""
        with self._cond:
            if room not in self._rooms and auto_create:
                self._rooms[room] = _new_room(CreateRoomRequest(name=room))
            if room not in self._rooms:
                raise KeyError(f"no room {room!r} in the double")
            now = time.time()
            participant = ParticipantInfo(
                sid=_guid("PA_"),
                identity=identity,
                name=name,
                state=ParticipantInfo.State.ACTIVE,
                joined_at=int(now),
                joined_at_ms=int(now * 1000),
            )
            self._participants.setdefault(room, {})[identity] = participant
            self._count_participants(room)
            return _copy(participant)

    # -- webhooks

    def signed_webhook(self, event: WebhookEvent) -> tuple[bytes, str]:
        """(body, Authorization header value) as this server's LiveKit would post them."""
        return sign_webhook(event, self.api_key, self.api_secret)

    def make_event(
        self,
        event: str,
        room: str,
        *,
        participant_identity: str | None = None,
        egress: EgressInfo | None = None,
        event_id: str | None = None,
        created_at: int | None = None,
    ) -> WebhookEvent:
        """A WebhookEvent shaped like LiveKit's: the room's stored proto (with its sid) when
        the double has it; egress events carry `egressInfo` and no `room`, as LiveKit's."""
        if event not in WEBHOOK_EVENTS:
            raise ValueError(f"unknown LiveKit webhook event {event!r}")
        webhook = WebhookEvent(
            event=event,
            id=event_id or _guid("EV_"),
            created_at=int(time.time()) if created_at is None else created_at,
        )
        if event.startswith("egress_"):
            webhook.egress_info.CopyFrom(_egress_for_event(event, room, egress))
            return webhook
        with self._cond:
            webhook.room.CopyFrom(self._rooms.get(room) or Room(name=room))
            if participant_identity is not None:
                webhook.participant.CopyFrom(
                    self._participant_for_event(room, participant_identity)
                )
        if egress is not None:
            webhook.egress_info.CopyFrom(egress)
        return webhook

    def _participant_for_event(self, room: str, identity: str) -> ParticipantInfo:
        known = self._participants.get(room, {}).get(identity)
        if known is not None:
            return known
        return ParticipantInfo(sid=_guid("PA_"), identity=identity, joined_at=int(time.time()))

    # -- request handling (runs on the server's threads)

    def _handle(self, request: _HttpRequest) -> _Reply:
        try:
            route = _route(request)
            message = _decode(route, request)
            self._record(route.method, message)
            self._raise_injected_fault(route.method)
            self._authorize(route, message, request.authorization)
            return _encode(self._handlers[route.method](message), request)
        except _Refusal as refusal:
            return refusal.reply
        except Exception as exc:
            # A bug in the double must reach the test as a readable error, not a dropped
            # connection.
            return _twirp_error("internal", f"{type(exc).__name__}: {exc}").reply

    def _record(self, method: str, message: Message) -> None:
        with self._cond:
            self._calls.append((method, _copy(message)))
            self._cond.notify_all()

    def _raise_injected_fault(self, method: str) -> None:
        with self._cond:
            pending = self._faults.get(method)
            if not pending:
                return
            code, status = pending.popleft()
        raise _twirp_error(code, f"injected failure of {method}", status=status)

    def _authorize(self, route: _Route, message: Message, authorization: str | None) -> None:
        claims = self._verify_header(authorization)
        video = claims.video if claims is not None else None
        if video is None or not route.allowed(video, message):
            # LiveKit's twirpAuthError: Unauthenticated, not PermissionDenied.
            raise _twirp_error("unauthenticated", "permissions denied")

    def _verify_header(self, authorization: str | None) -> Claims | None:
        """LiveKit's APIKeyAuthMiddleware: no header passes (the service then refuses)."""
        if not authorization:
            return None
        if not authorization.startswith("Bearer "):
            raise _plain_unauthorized("invalid authorization header. Must start with Bearer ")
        token = authorization[len("Bearer ") :]
        try:
            issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
        except jwt.PyJWTError as exc:
            raise _plain_unauthorized("invalid authorization token") from exc
        if issuer != self.api_key:
            raise _plain_unauthorized(f"invalid API key: {issuer}")
        try:
            return self._verifier.verify(token)
        except jwt.PyJWTError as exc:
            raise _plain_unauthorized(f"invalid token: {token}, error: {exc}") from exc

    # -- RoomService

    def _create_room(self, request: CreateRoomRequest) -> Room:
        with self._cond:
            room = self._rooms.get(request.name)
            if room is None:
                room = self._rooms[request.name] = _new_room(request)
            return _copy(room)

    def _list_rooms(self, request: ListRoomsRequest) -> ListRoomsResponse:
        wanted = set(request.names)
        with self._cond:
            rooms = [room for name, room in self._rooms.items() if not wanted or name in wanted]
            return ListRoomsResponse(rooms=rooms)

    def _delete_room(self, request: DeleteRoomRequest) -> DeleteRoomResponse:
        with self._cond:
            if request.room not in self._rooms:
                raise _twirp_error("not_found", "requested room does not exist")
            del self._rooms[request.room]
            self._participants.pop(request.room, None)
            now = time.time_ns()
            for info in self._egresses.values():
                if info.room_name == request.room and _is_live(info):
                    _complete_egress(info, now)
        return DeleteRoomResponse()

    def _list_participants(self, request: ListParticipantsRequest) -> ListParticipantsResponse:
        with self._cond:
            participants = list(self._participants.get(request.room, {}).values())
            return ListParticipantsResponse(participants=participants)

    def _remove_participant(self, request: RoomParticipantIdentity) -> RemoveParticipantResponse:
        with self._cond:
            in_room = self._participants.get(request.room, {})
            if in_room.pop(request.identity, None) is None:
                raise _twirp_error("not_found", "participant not found")
            self._count_participants(request.room)
        return RemoveParticipantResponse()

    def _count_participants(self, room: str) -> None:
        if room in self._rooms:
            self._rooms[room].num_participants = len(self._participants.get(room, {}))

    # -- Egress

    def _start_room_composite_egress(self, request: RoomCompositeEgressRequest) -> EgressInfo:
        with self._cond:
            room = self._rooms.get(request.room_name)
            if room is None:
                raise _twirp_error("not_found", "requested room does not exist")
            now = time.time_ns()
            info = EgressInfo(
                egress_id=_guid("EG_"),
                room_id=room.sid,
                room_name=room.name,
                status=EgressStatus.EGRESS_ACTIVE,
                started_at=now,
                updated_at=now,
                room_composite=request,
            )
            self._egresses[info.egress_id] = info
            # The worker answers before its pipeline plays: STARTING, not started yet.
            reply = _copy(info)
        reply.status = EgressStatus.EGRESS_STARTING
        reply.started_at = 0
        return reply

    def _stop_egress(self, request: StopEgressRequest) -> EgressInfo:
        with self._cond:
            info = self._egresses.get(request.egress_id)
            if info is None:
                raise _twirp_error("not_found", "egress does not exist")
            if not _is_live(info):
                status = EgressStatus.Name(info.status)
                raise _twirp_error(
                    "failed_precondition", f"egress with status {status} cannot be stopped"
                )
            now = time.time_ns()
            # The worker answers as it starts flushing: ENDING; the file is done right after.
            reply = _copy(info)
            _complete_egress(info, now)
        reply.status = EgressStatus.EGRESS_ENDING
        reply.updated_at = now
        return reply

    def _list_egress(self, request: ListEgressRequest) -> ListEgressResponse:
        with self._cond:
            items = [
                info
                for info in self._egresses.values()
                if (not request.room_name or info.room_name == request.room_name)
                and (not request.egress_id or info.egress_id == request.egress_id)
                and (not request.active or _is_live(info))
            ]
            return ListEgressResponse(items=items)


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"the double serves no method {method!r}; it serves {sorted(METHODS)}")


def _new_room(request: CreateRoomRequest) -> Room:
    now = time.time()
    return Room(
        sid=_guid("RM_"),
        name=request.name,
        empty_timeout=request.empty_timeout or DEFAULT_EMPTY_TIMEOUT_S,
        departure_timeout=request.departure_timeout or DEFAULT_DEPARTURE_TIMEOUT_S,
        max_participants=request.max_participants,
        metadata=request.metadata,
        creation_time=int(now),
        creation_time_ms=int(now * 1000),
    )


def _complete_egress(info: EgressInfo, now_ns: int) -> None:
    """The recorder's end state: COMPLETE, with the file it wrote when one was requested."""
    info.status = EgressStatus.EGRESS_COMPLETE
    info.ended_at = info.updated_at = now_ns
    if _requests_file(info.room_composite):
        filename = _output_filename(info.room_composite, info.room_name, info.started_at)
        info.file_results.append(
            FileInfo(
                filename=filename,
                location=filename,
                started_at=info.started_at,
                ended_at=now_ns,
                duration=now_ns - info.started_at,
            )
        )


def _egress_for_event(event: str, room: str, egress: EgressInfo | None) -> EgressInfo:
    if egress is None:
        raise ValueError(f"{event} needs the egress it reports")
    if egress.room_name != room:
        raise ValueError(f"egress {egress.egress_id} is of room {egress.room_name!r}, not {room!r}")
    return egress


def main() -> None:
    """`python -m tools.livekit_double PORT`: serve until killed, with the key and
    secret from LIVEKIT_API_KEY / LIVEKIT_API_SECRET (a separate process, so the
    one measuring is not slowed by it)."""
    import os
    import signal
    import sys

    double = LiveKitDouble(os.environ["LIVEKIT_API_KEY"], os.environ["LIVEKIT_API_SECRET"])
    double.start(port=int(sys.argv[1]))
    print(double.url, flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    double.stop()


if __name__ == "__main__":
    main()
