"""A TEST DOUBLE of Expo's push service, the third-party service the project sends push
notifications through.

Why a double: Expo's push service (https://exp.host) cannot be reached from the test
machines. So the project's tests run against this local HTTP server instead.

What makes it worth testing against: it speaks Expo's REAL wire format (as documented at
https://docs.expo.dev/push-notifications/sending-notifications/), so the project's
production path - the official `exponent_server_sdk` `PushClient`, unchanged, given
`host=double.url` - is exercised:

* `POST /--/api/v2/push/send` with a JSON array of messages (or one message object) ->
  `{"data": [ticket, ...]}`, one ticket per recipient in request order; a ticket is
  `{"status": "ok", "id": ...}` or `{"status": "error", "message": ...,
  "details": {"error": ...}}` (error tickets carry no id, as on Expo). One message object
  with a single string `to` gets a single ticket object as `data`, as the docs say.
* `POST /--/api/v2/push/getReceipts` with `{"ids": [...]}` -> `{"data": {id: receipt}}`;
  ids the double never issued are simply absent from `data`, as on Expo.
* Request-level failures: HTTP 4xx/5xx with `{"errors": [{"code": ..., "message": ...}]}`.
* Bodies may be gzip- (or deflate-) compressed with `Content-Encoding`, as Expo accepts and
  the Node SDK does; the Python SDK never compresses.

Behaviour chosen where Expo's documentation is silent or loose (say so when it matters):

* More than 100 notifications in one send request (counting each recipient of a `to`
  array, as Expo's own Node SDK counts them) -> 400 `PUSH_TOO_MANY_NOTIFICATIONS`, nothing
  accepted; more than 1000 receipt ids -> 400 `PUSH_TOO_MANY_RECEIPTS`.
* A message that is not an object, or whose `to` is missing or not a string / non-empty
  list of strings, or a body that is not JSON -> 400 `VALIDATION_ERROR` for the whole
  request (Expo validates the request schema first; the exact code it uses is not
  documented).
* A `to` string that does not start with `ExponentPushToken[` or `ExpoPushToken[` -> a
  `DeviceNotRegistered` error ticket ("... is not a valid Expo push token"), the same
  error Expo gives a token it does not know, so callers drop the token either way. (The
  Python SDK refuses such tokens itself, with ValueError, before sending.)
* A message whose payload - the message object without `to`, as compact UTF-8 JSON - is
  over 4096 bytes gets a `MessageTooBig` error ticket. Expo's limit is on the payload it
  hands to APNs/FCM, which it builds from these fields; the docs list MessageTooBig under
  receipt errors, users report it on tickets, and the SDK reads it from either.
* `DeviceNotRegistered` tickets and receipts carry `details.expoPushToken`, as Expo added.
* The request's `Authorization` header (Expo's optional access token) is not checked.

Not simulated: delivery delay (receipts exist as soon as the ticket does), rate limiting
by itself (use `fail_next(status=429)`), `PUSH_TOO_MANY_EXPERIENCE_IDS`.
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import signal
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any, Literal, cast
from urllib.parse import urlsplit

from tools.http_double import DoubleServer, ServedInThread

API_PREFIX = "/--/api/v2"
SEND_PATH = API_PREFIX + "/push/send"
RECEIPTS_PATH = API_PREFIX + "/push/getReceipts"

MAX_NOTIFICATIONS = 100
MAX_RECEIPT_IDS = 1000
MAX_PAYLOAD_BYTES = 4096
TOKEN_PREFIXES = ("ExponentPushToken[", "ExpoPushToken[")

# Error values Expo documents for tickets and receipts; receipt_errors refuses others so a
# typo in a test fails loudly instead of producing an error no client recognises.
RECEIPT_ERRORS = frozenset(
    {
        "DeviceNotRegistered",
        "MessageTooBig",
        "MessageRateExceeded",
        "MismatchSenderId",
        "InvalidCredentials",
    }
)

Endpoint = Literal["send", "getReceipts"]
Message = dict[str, Any]


# ---------------------------------------------------------------- request-level errors


class _Refused(Exception):
    """The whole request is refused: Expo's `{"errors": [...]}` body with an HTTP error."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _fault(status: int) -> _Refused:
    if status == 429:
        return _Refused(
            429,
            "TOO_MANY_REQUESTS",
            "You are exceeding the request limit of 600 notifications per second.",
        )
    return _Refused(status, "INTERNAL_SERVER_ERROR", "An unknown error occurred.")


def _invalid(message: str) -> _Refused:
    return _Refused(400, "VALIDATION_ERROR", message)


@dataclass(frozen=True)
class _Reply:
    status: int
    body: dict[str, Any]

    @classmethod
    def refused(cls, error: _Refused) -> _Reply:
        return cls(error.status, {"errors": [{"code": error.code, "message": error.message}]})


# ---------------------------------------------------------------- decoding and checks


def _decode(body: bytes, content_encoding: str) -> Any:
    encoding = content_encoding.strip().lower()
    try:
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        elif encoding not in ("", "identity"):
            raise _invalid(f"Unsupported Content-Encoding {content_encoding!r}.")
    except (OSError, EOFError, zlib.error) as error:
        raise _invalid(f"The request body could not be decompressed: {error}") from None
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _invalid("The request body must be JSON.") from None


def _recipients(message: Any, index: int) -> list[str]:
    """The tokens a message goes to; refuses the request if it is malformed."""
    if not isinstance(message, dict):
        raise _invalid(f'"[{index}]" must be an object.')
    to = message.get("to")
    if isinstance(to, str):
        return [to]
    if isinstance(to, list) and to and all(isinstance(token, str) for token in to):
        return cast(list[str], to)
    raise _invalid(f'"[{index}].to" must be a push token or a non-empty array of push tokens.')


def _is_token(token: str) -> bool:
    return token.startswith(TOKEN_PREFIXES) and token.endswith("]")


def _payload_size(message: Message) -> int:
    # The token is not part of what Expo hands to APNs/FCM, so it does not count.
    payload = {key: value for key, value in message.items() if key != "to"}
    return len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())


def _error(error: str, message: str, token: str | None = None) -> dict[str, Any]:
    details: dict[str, Any] = {"error": error}
    if token is not None and error == "DeviceNotRegistered":
        details["expoPushToken"] = token
    return {"status": "error", "message": message, "details": details}


def _not_registered(token: str) -> dict[str, Any]:
    return _error(
        "DeviceNotRegistered", f'"{token}" is not a registered push notification recipient', token
    )


# ---------------------------------------------------------------- HTTP plumbing


class _Handler(BaseHTTPRequestHandler):
    # One request per connection: stop() never waits on an idle keep-alive socket.
    protocol_version = "HTTP/1.0"

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        encoding = self.headers.get("Content-Encoding", "")
        reply = cast(DoubleServer[ExpoDouble], self.server).double._handle(
            self.path, body, encoding
        )
        data = json.dumps(reply.body).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        # Quiet: a line per request on stderr would bury test output.
        return


# ---------------------------------------------------------------- the double


class ExpoDouble(ServedInThread):
    """Expo's push API on 127.0.0.1, served from a background thread.

    Usable from synchronous fixtures and while an asyncio loop runs in the same process.
    `wait_for_messages` blocks: call it off the event loop (e.g. `asyncio.to_thread`) when
    the code that sends runs on that loop.
    """

    def __init__(self) -> None:
        super().__init__(_Handler)
        # One condition guards all state; wait_for_messages waits on it for new messages.
        self._cond = threading.Condition()
        self._messages: list[Message] = []
        # When each recorded message arrived (time.perf_counter()), for benchmarks.
        self._arrived: list[float] = []
        self._send_requests = 0
        self._receipt_requests = 0
        self._tickets: dict[str, str] = {}  # ticket id -> token
        self._unregistered: set[str] = set()
        self._receipt_errors: dict[str, str] = {}  # ticket id or token -> error
        self._faults: dict[Endpoint, deque[int]] = {"send": deque(), "getReceipts": deque()}
        self._routes: dict[str, tuple[Endpoint, Callable[[Any], _Reply]]] = {
            SEND_PATH: ("send", self._send),
            RECEIPTS_PATH: ("getReceipts", self._get_receipts),
        }

    # -- lifecycle

    # -- what tests inspect

    @property
    def messages(self) -> list[Message]:
        """Copies of the accepted notifications (those given an "ok" ticket), in arrival
        order, one per recipient with `to` narrowed to that recipient's token."""
        with self._cond:
            return copy.deepcopy(self._messages)

    @property
    def arrivals(self) -> list[tuple[float, dict[str, Any]]]:
        """(time.perf_counter() at arrival, message) for each recorded message."""
        with self._cond:
            return list(zip(self._arrived, copy.deepcopy(self._messages), strict=True))

    def messages_to(self, token: str) -> list[Message]:
        return [message for message in self.messages if message["to"] == token]

    def wait_for_messages(self, count: int, timeout: float = 5.0) -> list[Message]:
        """Block until at least `count` notifications were accepted; return them all."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._messages) >= count, timeout):
                seen = len(self._messages)
                raise TimeoutError(f"{count} push message(s) not seen in {timeout}s: {seen}")
            return copy.deepcopy(self._messages)

    @property
    def requests(self) -> int:
        """/push/send HTTP requests received, including refused ones."""
        with self._cond:
            return self._send_requests

    @property
    def receipt_requests(self) -> int:
        """/push/getReceipts HTTP requests received, including refused ones."""
        with self._cond:
            return self._receipt_requests

    def clear(self) -> None:
        """Forget what was recorded (messages, request counts); tickets already issued and
        the behaviours arranged below are kept."""
        with self._cond:
            self._messages.clear()
            self._arrived.clear()
            self._send_requests = self._receipt_requests = 0

    # -- what tests arrange

    def unregister(self, token: str) -> None:
        """From now on, tickets for `token` and receipts of its tickets (even ones issued
        before) are `DeviceNotRegistered` errors."""
        with self._cond:
            self._unregistered.add(token)

    def fail_next(self, times: int = 1, status: int = 429, *, endpoint: Endpoint = "send") -> None:
        """Refuse the next `times` requests to `endpoint` as a whole: 429
        TOO_MANY_REQUESTS, or a 5xx INTERNAL_SERVER_ERROR. No message is recorded."""
        if status != 429 and not 500 <= status <= 599:
            raise ValueError(f"Expo's transient failures are 429 or 5xx, not {status}")
        with self._cond:
            self._faults[endpoint].extend([status] * times)

    def receipt_errors(self, key: str, error: str = "DeviceNotRegistered") -> None:
        """Receipts of ticket `key`, or of every ticket for token `key`, report `error`."""
        if error not in RECEIPT_ERRORS:
            raise ValueError(f"unknown Expo receipt error {error!r}")
        with self._cond:
            self._receipt_errors[key] = error

    # -- serving (called on the server's threads)

    def _handle(self, raw_path: str, body: bytes, content_encoding: str) -> _Reply:
        route = self._routes.get(urlsplit(raw_path).path)
        if route is None:
            return _Reply(404, {"errors": [{"code": "NOT_FOUND", "message": "Not found."}]})
        endpoint, serve = route
        try:
            self._count_and_maybe_fail(endpoint)
            return serve(_decode(body, content_encoding))
        except _Refused as error:
            return _Reply.refused(error)

    def _count_and_maybe_fail(self, endpoint: Endpoint) -> None:
        with self._cond:
            if endpoint == "send":
                self._send_requests += 1
            else:
                self._receipt_requests += 1
            faults = self._faults[endpoint]
            status = faults.popleft() if faults else None
        # Before the body is even parsed: an overloaded server refuses whatever it is sent.
        if status is not None:
            raise _fault(status)

    def _send(self, payload: Any) -> _Reply:
        single = isinstance(payload, dict)
        messages = [payload] if single else payload
        if not isinstance(messages, list):
            raise _invalid('"value" must be an array of messages or a message object.')
        addressed = [(message, _recipients(message, i)) for i, message in enumerate(messages)]
        total = sum(len(tokens) for _, tokens in addressed)
        if total > MAX_NOTIFICATIONS:
            raise _Refused(
                400,
                "PUSH_TOO_MANY_NOTIFICATIONS",
                f"You are trying to send {total} push notifications in one request; "
                f"at most {MAX_NOTIFICATIONS} are allowed.",
            )
        # One lock for the whole batch, so a batch's messages are recorded together.
        with self._cond:
            tickets = [self._ticket(m, token) for m, tokens in addressed for token in tokens]
            self._cond.notify_all()
        data: Any = tickets[0] if single and isinstance(payload["to"], str) else tickets
        return _Reply(200, {"data": data})

    def _ticket(self, message: Message, token: str) -> dict[str, Any]:
        """Issue the ticket for one recipient; the caller holds the lock."""
        if not _is_token(token):
            return _error("DeviceNotRegistered", f'"{token}" is not a valid Expo push token', token)
        if token in self._unregistered:
            return _not_registered(token)
        size = _payload_size(message)
        if size > MAX_PAYLOAD_BYTES:
            return _error(
                "MessageTooBig",
                f"Message was too big: {size} bytes, over the {MAX_PAYLOAD_BYTES} byte limit",
            )
        ticket_id = str(uuid.uuid4())
        self._tickets[ticket_id] = token
        self._messages.append({**copy.deepcopy(message), "to": token})
        self._arrived.append(time.perf_counter())
        return {"status": "ok", "id": ticket_id}

    def _get_receipts(self, payload: Any) -> _Reply:
        ids = payload.get("ids") if isinstance(payload, dict) else None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise _invalid('"ids" must be an array of ticket id strings.')
        if len(ids) > MAX_RECEIPT_IDS:
            raise _Refused(
                400,
                "PUSH_TOO_MANY_RECEIPTS",
                f"You are trying to get {len(ids)} push receipts in one request; "
                f"at most {MAX_RECEIPT_IDS} are allowed.",
            )
        with self._cond:
            data = {i: self._receipt(i) for i in ids if i in self._tickets}
        return _Reply(200, {"data": data})

    def _receipt(self, ticket_id: str) -> dict[str, Any]:
        """The receipt of a ticket the double issued; the caller holds the lock."""
        token = self._tickets[ticket_id]
        error = self._receipt_errors.get(ticket_id) or self._receipt_errors.get(token)
        if error is None and token in self._unregistered:
            error = "DeviceNotRegistered"
        if error is None:
            return {"status": "ok"}
        if error == "DeviceNotRegistered":
            return _not_registered(token)
        return _error(error, f"The push notification to {token} failed: {error}")


def main() -> None:
    """`python -m tools.expo_double [PORT]`: print the URL, serve until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(description="Serve a test double of Expo's push API.")
    parser.add_argument("port", nargs="?", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args()
    signals = {signal.SIGTERM, signal.SIGINT}
    # Blocked before the server thread starts (threads inherit the mask), so that the
    # signals wait for sigwait below instead of killing the process mid-request.
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    double = ExpoDouble().start(port=args.port)
    try:
        print(double.url, flush=True)
        signal.sigwait(signals)
    finally:
        double.stop()


if __name__ == "__main__":
    main()
