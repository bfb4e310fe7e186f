"""Push tokens: given with the device or later, validated, only for your own
devices, dropped with the device."""

from __future__ import annotations

from sqlalchemy import select

from core.db import make_engine
from core.models import Device
from tests.factories import ApiUser, register
from tools.stack import Stack

TOKEN = "ExponentPushToken[xxxxxxxxxxxxxxxxxxxxxx]"


def stored_token(stack: Stack, device_id: str) -> str | None:
    engine = make_engine(stack.config.database_url)
    try:
        with engine.connect() as conn:
            token: str | None = conn.execute(
                select(Device.push_token).where(Device.id == device_id)  # type: ignore[arg-type]
            ).scalar_one()
            return token
    finally:
        engine.dispose()


def put_token(user: ApiUser, device_id: str, token: object) -> tuple[int, dict[str, object]]:
    response = user.request(
        "PUT", f"/v1/devices/{device_id}/push-token", json={"push_token": token}
    )
    return response.status_code, response.json()


def test_a_token_comes_with_the_device_or_later_and_is_validated(stack: Stack) -> None:
    alice = register(stack.config.api_url, "alice")
    with_token = alice.request("POST", "/v1/devices", json={"platform": "ios", "push_token": TOKEN})
    assert with_token.status_code == 201
    assert stored_token(stack, with_token.json()["device_id"]) == TOKEN

    bad = alice.request("POST", "/v1/devices", json={"platform": "ios", "push_token": "abc"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_payload"

    device_id = alice.device("android")["device_id"]
    assert stored_token(stack, device_id) is None
    newer = "ExponentPushToken[yyyyyyyyyyyy]"
    assert put_token(alice, device_id, newer) == (
        200,
        {"device_id": device_id, "push_token": newer},
    )
    assert stored_token(stack, device_id) == newer
    for malformed in ("ExponentPushToken[]", "token", 42, "ExponentPushToken[a b]", "x" * 300):
        status, body = put_token(alice, device_id, malformed)
        assert status == 422 and body["error"]["code"] == "invalid_payload"  # type: ignore[index]
    assert stored_token(stack, device_id) == newer  # unchanged
    assert put_token(alice, device_id, None)[0] == 200
    assert stored_token(stack, device_id) is None


def test_no_one_sets_a_token_on_a_device_that_is_not_theirs(stack: Stack) -> None:
    alice, mallory = register(stack.config.api_url, "alice"), register(stack.config.api_url, "mal")
    device = alice.request("POST", "/v1/devices", json={"platform": "ios", "push_token": TOKEN})
    device_id = device.json()["device_id"]
    status, body = put_token(mallory, device_id, "ExponentPushToken[mallorysphone]")
    assert status == 404 and body["error"]["code"] == "not_found"  # type: ignore[index]
    assert stored_token(stack, device_id) == TOKEN


def test_a_removed_device_takes_no_more_pushes(stack: Stack) -> None:
    alice = register(stack.config.api_url, "alice")
    device = alice.request("POST", "/v1/devices", json={"platform": "ios", "push_token": TOKEN})
    device_id = device.json()["device_id"]
    assert alice.request("DELETE", f"/v1/devices/{device_id}").status_code == 204
    assert stored_token(stack, device_id) is None
    assert put_token(alice, device_id, TOKEN)[0] == 404
