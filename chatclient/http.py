"""The HTTP side of the contract (`/v1`), on one `httpx.AsyncClient`.

Used for what MQTT does not do: accounts, devices, conversations, history, media,
sync, and the HTTP send fallback. Every 4xx/5xx becomes an `ApiError` carrying
the contract's error `code`, so callers branch on codes, not on status numbers.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import httpx

from bridge.wire.messaging import SendMessage, StoredMessage

Platform = Literal["ios", "android", "web"]


class ApiError(Exception):
    """An HTTP error answer. `code` is the contract's error code (e.g. `not_member`).

    Bodies that are not in the contract's shape (a proxy's 502, say) get the code
    `http_<status>` and the raw text as message.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Session:
    user_id: str
    access_token: str


@dataclass(frozen=True, slots=True)
class DeviceCredentials:
    """One device's MQTT identity, from `POST /v1/devices`."""

    device_id: str
    ws_url: str
    tcp_host: str
    tcp_port: int
    username: str
    password: str
    client_id: str


def _error_from(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
        error = body["error"]
        return ApiError(response.status_code, str(error["code"]), str(error["message"]))
    except (ValueError, KeyError, TypeError):
        return ApiError(response.status_code, f"http_{response.status_code}", response.text)


class ChatHttp:
    """Async client of the HTTP API. Use `async with ChatHttp(url) as http:`.

    `transport` lets tests run against the app in process (`httpx.ASGITransport`).
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._client = httpx.AsyncClient(base_url=base_url, timeout=timeout, transport=transport)
        self.token: str | None = None
        self.user_id: str | None = None
        if token is not None:
            self.use_token(token)

    async def __aenter__(self) -> ChatHttp:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    def use_token(self, token: str) -> None:
        """Send this bearer token from now on."""
        self.token = token
        self._client.headers["Authorization"] = f"Bearer {token}"

    # --- plumbing ---------------------------------------------------------------------

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = await self._client.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise _error_from(response)
        return response

    async def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = await self._request(method, path, **kwargs)
        return cast(dict[str, Any], response.json())

    def _session(self, body: dict[str, Any]) -> Session:
        session = Session(user_id=str(body["user_id"]), access_token=str(body["access_token"]))
        self.user_id = session.user_id
        self.use_token(session.access_token)
        return session

    # --- accounts and devices ---------------------------------------------------------

    async def register(self, username: str, password: str, display_name: str) -> Session:
        body = {"username": username, "password": password, "display_name": display_name}
        return self._session(await self._json("POST", "/v1/auth/register", json=body))

    async def login(self, username: str, password: str) -> Session:
        body = {"username": username, "password": password}
        return self._session(await self._json("POST", "/v1/auth/login", json=body))

    async def create_device(
        self, platform: Platform = "web", push_token: str | None = None
    ) -> DeviceCredentials:
        # Optional fields are omitted rather than sent as null: the server is strict.
        body: dict[str, Any] = {"platform": platform}
        if push_token is not None:
            body["push_token"] = push_token
        answer = await self._json("POST", "/v1/devices", json=body)
        mqtt = answer["mqtt"]
        return DeviceCredentials(
            device_id=str(answer["device_id"]),
            ws_url=str(mqtt["ws_url"]),
            tcp_host=str(mqtt["tcp_host"]),
            tcp_port=int(mqtt["tcp_port"]),
            username=str(mqtt["username"]),
            password=str(mqtt["password"]),
            client_id=str(mqtt["client_id"]),
        )

    async def delete_device(self, device_id: str) -> None:
        await self._request("DELETE", f"/v1/devices/{device_id}")

    # --- conversations and messages ---------------------------------------------------

    async def create_conversation(
        self, member_ids: list[str], title: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"member_ids": member_ids}
        if title is not None:
            body["title"] = title
        return await self._json("POST", "/v1/conversations", json=body)

    async def mute(self, conv_id: str, muted: bool = True) -> None:
        """No push notifications for this conversation (or again, with False)."""
        await self._json("PUT", f"/v1/conversations/{conv_id}/mute", json={"muted": muted})

    async def list_conversations(self) -> list[dict[str, Any]]:
        answer = await self._json("GET", "/v1/conversations")
        return cast(list[dict[str, Any]], answer["conversations"])

    async def history(
        self,
        conv_id: str,
        *,
        after_seq: int | None = None,
        before_seq: int | None = None,
        limit: int | None = None,
    ) -> list[StoredMessage]:
        """Messages in ascending `seq` order (see the contract for the window rules)."""
        window = {"after_seq": after_seq, "before_seq": before_seq, "limit": limit}
        params = {name: value for name, value in window.items() if value is not None}
        answer = await self._json("GET", f"/v1/conversations/{conv_id}/messages", params=params)
        return [StoredMessage.model_validate(m) for m in answer["messages"]]

    async def send(self, conv_id: str, body: SendMessage) -> tuple[int, dict[str, Any]]:
        """The HTTP send fallback: (201, stored message) or (200, the original).

        A rejection is a 4xx and raises `ApiError` with the rejection code.
        """
        response = await self._request(
            "POST",
            f"/v1/conversations/{conv_id}/messages",
            content=body.model_dump_json(exclude_none=True),
            headers={"Content-Type": "application/json"},
        )
        return response.status_code, cast(dict[str, Any], response.json())

    async def sync(self, known: dict[str, int], limit: int = 200) -> list[dict[str, Any]]:
        """What happened since `known` ({conv_id: last seq seen}), per conversation.

        Each item: conv_id, kind, member_ids, title, last_seq, read_seq, messages
        (stored-message dicts, ascending), has_more.
        """
        answer = await self._json("POST", "/v1/sync", json={"known": known, "limit": limit})
        return cast(list[dict[str, Any]], answer["conversations"])

    # --- presence ---------------------------------------------------------------------

    async def presence(self, user_id: str) -> dict[str, Any]:
        """`{"user_id", "online", "last_seen"}` of yourself or a conversation peer."""
        return await self._json("GET", f"/v1/users/{user_id}/presence")

    # --- calls ------------------------------------------------------------------------

    async def calls(self, *, limit: int | None = None, before: str | None = None) -> dict[str, Any]:
        """`{"calls": [...newest first], "missed_unseen": n}`; `before` is a call id."""
        window = {"limit": limit, "before": before}
        params = {name: value for name, value in window.items() if value is not None}
        return await self._json("GET", "/v1/calls", params=params)

    async def mark_calls_seen(self, call_ids: list[str] | None = None) -> int:
        """Mark missed calls seen (these, or all); returns the missed calls left unseen."""
        body = {} if call_ids is None else {"call_ids": call_ids}
        answer = await self._json("POST", "/v1/calls/seen", json=body)
        return int(answer["missed_unseen"])

    # --- media ------------------------------------------------------------------------

    # --- live support (docs/support.md) ------------------------------------------------

    async def open_ticket(
        self, subject: str, priority: str = "normal", text: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"subject": subject, "priority": priority}
        if text is not None:
            body["text"] = text
        return await self._json("POST", "/v1/support/tickets", json=body)

    async def tickets(self, scope: str = "own") -> list[dict[str, Any]]:
        found = await self._json("GET", "/v1/support/tickets", params={"scope": scope})
        tickets: list[dict[str, Any]] = found["tickets"]
        return tickets

    async def ticket(self, ticket_id: str) -> dict[str, Any]:
        return await self._json("GET", f"/v1/support/tickets/{ticket_id}")

    async def take_ticket(self, ticket_id: str) -> dict[str, Any]:
        return await self._json("POST", f"/v1/support/tickets/{ticket_id}/take")

    async def transfer_ticket(self, ticket_id: str, operator_id: str | None) -> dict[str, Any]:
        return await self._json(
            "POST", f"/v1/support/tickets/{ticket_id}/transfer", json={"operator_id": operator_id}
        )

    async def close_ticket(self, ticket_id: str) -> dict[str, Any]:
        return await self._json("POST", f"/v1/support/tickets/{ticket_id}/close")

    async def rate_ticket(
        self, ticket_id: str, score: int, comment: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"score": score}
        if comment is not None:
            body["comment"] = comment
        return await self._json("POST", f"/v1/support/tickets/{ticket_id}/rating", json=body)

    async def set_operator_status(self, status: str) -> dict[str, Any]:
        return await self._json("PUT", "/v1/support/operators/me/status", json={"status": status})

    async def operator_me(self) -> dict[str, Any]:
        """This operator's status, connection and load, as the router sees them."""
        return await self._json("GET", "/v1/support/operators/me")

    async def support_overview(self) -> dict[str, Any]:
        return await self._json("GET", "/v1/support/overview")

    async def upload(
        self,
        path_or_bytes: str | os.PathLike[str] | bytes,
        filename: str | None = None,
        content_type: str = "application/octet-stream",
    ) -> dict[str, Any]:
        """Upload a file (multipart field `file`) -> {media_id, mime, size, url, name}.

        `filename` defaults to the path's name; it is required for raw bytes.
        """
        if isinstance(path_or_bytes, bytes):
            if filename is None:
                raise ValueError("filename is required when uploading bytes")
            data = path_or_bytes
        else:
            path = Path(path_or_bytes)
            data = await asyncio.to_thread(path.read_bytes)  # keep the loop free
            filename = filename or path.name
        files = {"file": (filename, data, content_type)}
        return await self._json("POST", "/v1/media", files=files)

    async def download(self, url_path: str) -> bytes:
        """Fetch a media `url` (a path under the API) with the bearer token."""
        response = await self._request("GET", url_path)
        return response.content
