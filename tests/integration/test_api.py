"""The HTTP API against the real system: auth, conversations, history, HTTP send, errors."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from sqlalchemy import update
from sqlmodel import col

from core.db import make_engine
from core.models import AccessToken
from core.timefmt import utcnow
from tests.factories import register
from tools.stack import Stack


@pytest.fixture
def api(stack: Stack) -> str:
    return stack.config.api_url


def test_register_login_and_bad_credentials(api: str) -> None:
    user = register(api, "ana")
    ok = httpx.post(
        f"{api}/v1/auth/login", json={"username": user.username, "password": "correct horse"}
    )
    assert ok.status_code == 200 and ok.json()["user_id"] == user.user_id
    wrong = httpx.post(
        f"{api}/v1/auth/login", json={"username": user.username, "password": "wrong horse"}
    )
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_credentials"
    taken = httpx.post(
        f"{api}/v1/auth/register",
        json={"username": user.username, "password": "whatever1", "display_name": "X"},
    )
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "username_taken"


@pytest.mark.parametrize(
    "body",
    [
        {"username": "ab", "password": "longenough", "display_name": "x"},
        {"username": "good_name", "password": "short", "display_name": "x"},
        {"username": "good_name", "password": "longenough", "display_name": "   "},
        {"username": "good_name", "password": "longenough", "display_name": "x", "admin": True},
        {"username": 5, "password": "longenough", "display_name": "x"},
    ],
)
def test_register_rejects_bad_bodies(api: str, body: dict[str, object]) -> None:
    response = httpx.post(f"{api}/v1/auth/register", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_payload"


def test_malformed_json_is_a_4xx_json_error(api: str) -> None:
    response = httpx.post(
        f"{api}/v1/auth/login", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_payload"


def test_requests_without_a_valid_token_are_refused(api: str) -> None:
    assert httpx.get(f"{api}/v1/conversations").status_code == 401
    bad = httpx.get(f"{api}/v1/conversations", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "unauthorized"


def test_direct_conversation_is_one_per_pair(api: str) -> None:
    a, b = register(api, "a"), register(api, "b")
    first = a.request("POST", "/v1/conversations", json={"member_ids": [b.user_id]})
    assert first.status_code == 201
    body = first.json()
    assert body["kind"] == "direct"
    assert sorted(body["member_ids"]) == sorted([a.user_id, b.user_id])
    again = b.request("POST", "/v1/conversations", json={"member_ids": [a.user_id]})
    assert again.status_code == 200 and again.json()["conv_id"] == body["conv_id"]


def test_group_conversation_and_unknown_member(api: str) -> None:
    a, b, c = register(api, "a"), register(api, "b"), register(api, "c")
    group = a.request(
        "POST",
        "/v1/conversations",
        json={"member_ids": [b.user_id, c.user_id], "title": "Bike sale"},
    )
    assert group.status_code == 201
    assert group.json()["kind"] == "group" and group.json()["title"] == "Bike sale"
    unknown = a.request("POST", "/v1/conversations", json={"member_ids": ["u_nobody"]})
    assert unknown.status_code == 404
    only_me = a.request("POST", "/v1/conversations", json={"member_ids": [a.user_id]})
    assert only_me.status_code == 422


def _send(user: object, conv_id: str, cmid: str, text: str = "hello") -> httpx.Response:
    return user.request(
        "POST",
        f"/v1/conversations/{conv_id}/messages",  # type: ignore[attr-defined,no-any-return]
        json={"client_msg_id": cmid, "kind": "text", "text": text},
    )


def test_http_send_history_paging_and_duplicates(api: str) -> None:
    a, b = register(api, "a"), register(api, "b")
    conv = a.conversation(b)
    for i in range(1, 11):
        response = _send(a, conv, f"m{i}", f"text {i}")
        assert response.status_code == 201, response.text
        assert response.json()["seq"] == i
    duplicate = _send(a, conv, "m3", "a different body")
    assert duplicate.status_code == 200
    assert duplicate.json()["seq"] == 3 and duplicate.json()["text"] == "text 3"

    def seqs(query: str) -> list[int]:
        response = b.request("GET", f"/v1/conversations/{conv}/messages{query}")
        assert response.status_code == 200, response.text
        return [m["seq"] for m in response.json()["messages"]]

    assert seqs("?before_seq=9&limit=3") == [6, 7, 8]
    assert seqs("?after_seq=7") == [8, 9, 10]
    assert seqs("?after_seq=2&limit=2") == [3, 4]
    assert seqs("?limit=2") == [9, 10]
    assert seqs("") == list(range(1, 11))
    assert b.request("GET", f"/v1/conversations/{conv}/messages?limit=0").status_code == 422
    assert b.request("GET", f"/v1/conversations/{conv}/messages?limit=201").status_code == 422


def test_conversation_list_has_last_message_and_unread(api: str) -> None:
    a, b = register(api, "a"), register(api, "b")
    conv = a.conversation(b)
    for i in range(3):
        assert _send(a, conv, f"x{i}", f"n{i}").status_code == 201
    listed = b.request("GET", "/v1/conversations").json()["conversations"]
    (entry,) = [c for c in listed if c["conv_id"] == conv]
    assert entry["unread_count"] == 3
    assert entry["last_message"]["text"] == "n2"
    mine = a.request("GET", "/v1/conversations").json()["conversations"]
    assert next(c for c in mine if c["conv_id"] == conv)["unread_count"] == 0


def test_http_send_rejections(api: str) -> None:
    a, b, outsider = register(api, "a"), register(api, "b"), register(api, "o")
    conv = a.conversation(b)
    not_member = _send(outsider, conv, "z1")
    assert not_member.status_code == 403
    assert not_member.json()["error"]["code"] == "not_member"
    unknown = _send(a, "c_doesnotexist", "z2")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "unknown_conversation"
    too_long = _send(a, conv, "z3", "x" * 4001)
    assert too_long.status_code == 413 and too_long.json()["error"]["code"] == "too_large"
    empty = _send(a, conv, "z4", "")
    assert empty.status_code == 422
    unknown_media = a.request(
        "POST",
        f"/v1/conversations/{conv}/messages",
        json={"client_msg_id": "z5", "kind": "image", "media_id": "f_no"},
    )
    assert unknown_media.json()["error"]["code"] == "unknown_media"
    extra = a.request(
        "POST",
        f"/v1/conversations/{conv}/messages",
        json={"client_msg_id": "z6", "kind": "text", "text": "x", "extra": 1},
    )
    assert extra.status_code == 422
    history = a.request("GET", f"/v1/conversations/{conv}/messages").json()["messages"]
    assert history == []
    assert outsider.request("GET", f"/v1/conversations/{conv}/messages").status_code == 403


def test_a_body_nested_too_deep_is_invalid_payload(api: str) -> None:
    user = register(api, "deep")
    response = httpx.post(
        f"{api}/v1/conversations",
        content=b"[" * 30000 + b"]" * 30000,
        headers={**user.headers, "content-type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_payload"


def test_an_expired_token_is_refused(stack: Stack) -> None:
    user = register(stack.config.api_url, "expiring")
    assert httpx.get(f"{user.api_url}/v1/conversations", headers=user.headers).status_code == 200
    engine = make_engine(stack.config.database_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                update(AccessToken)
                .where(col(AccessToken.user_id) == user.user_id)
                .values(expires_at=utcnow() - timedelta(seconds=1))
            )
    finally:
        engine.dispose()
    refused = httpx.get(f"{user.api_url}/v1/conversations", headers=user.headers)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
