"""The Expo push test double, driven by the real `exponent_server_sdk` client over HTTP.

Most tests go through `PushClient(host=double.url)`, so they also pin down what the
project's code will see from the SDK: which exception, and where the HTTP status is.
Raw HTTP (urllib) is used only where the SDK cannot produce the request (over 100
messages, gzip, malformed bodies).
"""

from __future__ import annotations

import gzip
import json
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from exponent_server_sdk import (
    DeviceNotRegisteredError,
    MessageRateExceededError,
    MessageTooBigError,
    PushClient,
    PushMessage,
    PushServerError,
    PushTicket,
)

from tools.expo_double import MAX_PAYLOAD_BYTES, RECEIPTS_PATH, SEND_PATH, ExpoDouble

ROOT = Path(__file__).resolve().parents[2]
ALICE = "ExponentPushToken[alice-0000000000000000]"
BOB = "ExponentPushToken[bob-00000000000000000000]"
CAROL = "ExponentPushToken[carol-0000000000000000]"


@pytest.fixture
def expo() -> Iterator[ExpoDouble]:
    with ExpoDouble() as double:
        yield double


@pytest.fixture
def client(expo: ExpoDouble) -> Iterator[PushClient]:
    push_client = PushClient(host=expo.url)
    yield push_client
    push_client.session.close()


def post(
    url: str, body: Any, *, gzipped: bool = False, raw: bytes | None = None
) -> tuple[int, dict[str, Any]]:
    """POST outside the SDK; returns (HTTP status, decoded JSON body)."""
    data = raw if raw is not None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if gzipped:
        data = gzip.compress(data)
        headers["Content-Encoding"] = "gzip"
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def message_of_size(token: str, size: int) -> dict[str, Any]:
    """A message whose payload (without `to`, compact JSON) is exactly `size` bytes."""
    overhead = len(json.dumps({"data": {"x": ""}}, separators=(",", ":")))
    return {"to": token, "data": {"x": "a" * (size - overhead)}}


# ---------------------------------------------------------------- sending


def test_publish_multiple_gives_ok_tickets_and_records_messages(
    expo: ExpoDouble, client: PushClient
) -> None:
    tickets = client.publish_multiple(
        [
            PushMessage(to=ALICE, title="New message", body="hi", data={"chat": 7}),
            PushMessage(to=BOB, body="hello", badge=2),
            PushMessage(to=ALICE, body="again", channel_id="chat"),
        ]
    )

    assert [ticket.status for ticket in tickets] == ["ok", "ok", "ok"]
    for ticket in tickets:
        ticket.validate_response()
    ids = [ticket.id for ticket in tickets]
    assert all(isinstance(i, str) and i for i in ids)
    assert len(set(ids)) == 3
    assert expo.requests == 1
    assert expo.messages == [
        {"to": ALICE, "title": "New message", "body": "hi", "data": {"chat": 7}},
        {"to": BOB, "body": "hello", "badge": 2},
        {"to": ALICE, "body": "again", "channelId": "chat"},
    ]
    assert [m["body"] for m in expo.messages_to(ALICE)] == ["hi", "again"]
    assert expo.messages_to(CAROL) == []


def test_recorded_messages_are_copies(expo: ExpoDouble, client: PushClient) -> None:
    client.publish(PushMessage(to=ALICE, data={"n": 1}))
    expo.messages[0]["data"]["n"] = 99
    assert expo.messages[0]["data"] == {"n": 1}


def test_unregistered_token_gets_device_not_registered(
    expo: ExpoDouble, client: PushClient
) -> None:
    expo.unregister(BOB)

    alice, bob = client.publish_multiple([PushMessage(to=ALICE), PushMessage(to=BOB)])

    alice.validate_response()
    assert bob.status == "error"
    assert bob.id == ""  # error tickets carry no id
    assert bob.details == {"error": "DeviceNotRegistered", "expoPushToken": BOB}
    with pytest.raises(DeviceNotRegisteredError) as caught:
        bob.validate_response()
    assert BOB in caught.value.message
    assert caught.value.push_response is bob
    assert [m["to"] for m in expo.messages] == [ALICE]


def test_malformed_token_is_device_not_registered(expo: ExpoDouble) -> None:
    status, body = post(expo.url + SEND_PATH, [{"to": "not-a-token"}, {"to": ALICE}])

    assert status == 200
    assert body["data"][0]["status"] == "error"
    assert body["data"][0]["details"]["error"] == "DeviceNotRegistered"
    assert "not a valid Expo push token" in body["data"][0]["message"]
    assert body["data"][1]["status"] == "ok"
    assert [m["to"] for m in expo.messages] == [ALICE]


def test_sdk_refuses_non_exponent_tokens_before_sending(
    expo: ExpoDouble, client: PushClient
) -> None:
    # The SDK's own check only knows the "ExponentPushToken" prefix, so it cannot send to
    # the newer "ExpoPushToken[...]" form that the double (like Expo) accepts.
    with pytest.raises(ValueError, match="Invalid push token"):
        client.publish(PushMessage(to="ExpoPushToken[dave-000000000000000]"))
    assert expo.requests == 0
    status, body = post(expo.url + SEND_PATH, [{"to": "ExpoPushToken[dave-000000000000000]"}])
    assert (status, body["data"][0]["status"]) == (200, "ok")


def test_array_to_gets_one_ticket_per_recipient(expo: ExpoDouble) -> None:
    status, body = post(expo.url + SEND_PATH, [{"to": [ALICE, BOB], "body": "all"}])

    assert status == 200
    assert [ticket["status"] for ticket in body["data"]] == ["ok", "ok"]
    assert expo.messages == [{"to": ALICE, "body": "all"}, {"to": BOB, "body": "all"}]


def test_single_message_object_gets_a_single_ticket_object(expo: ExpoDouble) -> None:
    status, body = post(expo.url + SEND_PATH, {"to": ALICE, "body": "one"})

    assert status == 200
    assert body["data"]["status"] == "ok"
    assert isinstance(body["data"]["id"], str)


def test_gzip_body_is_accepted(expo: ExpoDouble) -> None:
    status, body = post(expo.url + SEND_PATH, [{"to": ALICE, "body": "zipped"}], gzipped=True)

    assert (status, body["data"][0]["status"]) == (200, "ok")
    assert expo.messages == [{"to": ALICE, "body": "zipped"}]


@pytest.mark.parametrize(
    "payload",
    [[{"body": "no to"}], ["not an object"], [{"to": 42}], [{"to": []}], [{"to": [ALICE, 7]}]],
)
def test_malformed_send_is_refused_as_a_whole(expo: ExpoDouble, payload: Any) -> None:
    status, body = post(expo.url + SEND_PATH, [{"to": ALICE}, *payload])

    assert status == 400
    assert body["errors"][0]["code"] == "VALIDATION_ERROR"
    assert expo.messages == []
    assert expo.requests == 1


def test_body_that_is_not_json_is_refused(expo: ExpoDouble) -> None:
    status, body = post(expo.url + SEND_PATH, None, raw=b"{not json")

    assert (status, body["errors"][0]["code"]) == (400, "VALIDATION_ERROR")


def test_unknown_path_is_404(expo: ExpoDouble) -> None:
    status, body = post(expo.url + "/--/api/v2/push/other", [])

    assert (status, body["errors"][0]["code"]) == (404, "NOT_FOUND")
    assert expo.requests == 0


# ---------------------------------------------------------------- limits


def test_over_100_messages_in_one_request_is_400(expo: ExpoDouble) -> None:
    status, body = post(expo.url + SEND_PATH, [{"to": ALICE, "body": str(i)} for i in range(101)])

    assert status == 400
    assert body["errors"][0]["code"] == "PUSH_TOO_MANY_NOTIFICATIONS"
    assert "data" not in body
    assert expo.messages == []
    assert expo.requests == 1


def test_exactly_100_messages_are_accepted(expo: ExpoDouble) -> None:
    status, body = post(expo.url + SEND_PATH, [{"to": ALICE, "body": str(i)} for i in range(100)])

    assert status == 200
    assert len(body["data"]) == 100
    assert len(expo.messages) == 100


def test_recipients_of_array_to_count_toward_the_limit(expo: ExpoDouble) -> None:
    status, body = post(expo.url + SEND_PATH, [{"to": [ALICE] * 60}, {"to": [BOB] * 41}])

    assert (status, body["errors"][0]["code"]) == (400, "PUSH_TOO_MANY_NOTIFICATIONS")


def test_sdk_over_the_limit_raises_push_server_error_400(expo: ExpoDouble) -> None:
    # The SDK chunks by 100 by default; with a larger chunk it sends 101 at once.
    big = PushClient(host=expo.url, max_message_count=101)
    try:
        with pytest.raises(PushServerError) as caught:
            big.publish_multiple([PushMessage(to=ALICE)] * 101)
    finally:
        big.session.close()
    assert caught.value.response.status_code == 400
    assert caught.value.errors[0]["code"] == "PUSH_TOO_MANY_NOTIFICATIONS"


def test_sdk_chunks_101_messages_into_two_requests(expo: ExpoDouble, client: PushClient) -> None:
    tickets = client.publish_multiple([PushMessage(to=ALICE, body=str(i)) for i in range(101)])

    assert len(tickets) == 101
    assert expo.requests == 2
    assert [m["body"] for m in expo.messages] == [str(i) for i in range(101)]


def test_message_over_4096_bytes_is_message_too_big(expo: ExpoDouble, client: PushClient) -> None:
    small, big = client.publish_multiple(
        [PushMessage(to=ALICE, body="fits"), PushMessage(to=BOB, data={"blob": "x" * 5000})]
    )

    small.validate_response()
    assert big.details == {"error": "MessageTooBig"}
    with pytest.raises(MessageTooBigError):
        big.validate_response()
    assert [m["to"] for m in expo.messages] == [ALICE]


def test_payload_size_boundary(expo: ExpoDouble) -> None:
    at_limit = message_of_size(ALICE, MAX_PAYLOAD_BYTES)
    over = message_of_size(BOB, MAX_PAYLOAD_BYTES + 1)

    status, body = post(expo.url + SEND_PATH, [at_limit, over])

    assert status == 200
    assert body["data"][0]["status"] == "ok"
    assert body["data"][1]["details"]["error"] == "MessageTooBig"


# ---------------------------------------------------------------- request-level failures


@pytest.mark.parametrize(
    ("status", "code"),
    [(429, "TOO_MANY_REQUESTS"), (500, "INTERNAL_SERVER_ERROR"), (503, "INTERNAL_SERVER_ERROR")],
)
def test_fail_next_raises_push_server_error_then_recovers(
    expo: ExpoDouble, client: PushClient, status: int, code: str
) -> None:
    expo.fail_next(status=status)

    with pytest.raises(PushServerError) as caught:
        client.publish_multiple([PushMessage(to=ALICE, body="first")])
    error = caught.value
    # The HTTP status is on the requests.Response the SDK keeps.
    assert error.response.status_code == status
    assert error.errors == [{"code": code, "message": error.errors[0]["message"]}]
    assert error.response_data == {"errors": error.errors}
    assert expo.messages == []

    (ticket,) = client.publish_multiple([PushMessage(to=ALICE, body="second")])
    ticket.validate_response()
    assert expo.requests == 2
    assert [m["body"] for m in expo.messages] == ["second"]


def test_fail_next_times(expo: ExpoDouble, client: PushClient) -> None:
    expo.fail_next(times=2, status=503)

    for _ in range(2):
        with pytest.raises(PushServerError):
            client.publish(PushMessage(to=ALICE))
    client.publish(PushMessage(to=ALICE)).validate_response()
    assert expo.requests == 3
    assert len(expo.messages) == 1


def test_fail_next_refuses_other_statuses(expo: ExpoDouble) -> None:
    with pytest.raises(ValueError, match="429 or 5xx"):
        expo.fail_next(status=400)


# ---------------------------------------------------------------- receipts


def test_receipts_are_ok_and_unknown_ids_absent(expo: ExpoDouble, client: PushClient) -> None:
    tickets = client.publish_multiple([PushMessage(to=ALICE), PushMessage(to=BOB)])
    unknown = PushTicket(None, PushTicket.SUCCESS_STATUS, "", None, "never-issued")

    receipts = client.check_receipts_multiple([*tickets, unknown])

    assert sorted(receipt.id for receipt in receipts) == sorted(t.id for t in tickets)
    for receipt in receipts:
        assert receipt.status == "ok"
        receipt.validate_response()
    assert expo.receipt_requests == 1


def test_receipt_errors_for_a_token(expo: ExpoDouble, client: PushClient) -> None:
    alice, bob = client.publish_multiple([PushMessage(to=ALICE), PushMessage(to=BOB)])
    expo.receipt_errors(BOB)

    by_id = {receipt.id: receipt for receipt in client.check_receipts_multiple([alice, bob])}

    by_id[alice.id].validate_response()
    assert by_id[bob.id].details == {"error": "DeviceNotRegistered", "expoPushToken": BOB}
    with pytest.raises(DeviceNotRegisteredError):
        by_id[bob.id].validate_response()


def test_receipt_errors_for_one_ticket(expo: ExpoDouble, client: PushClient) -> None:
    first, second = client.publish_multiple([PushMessage(to=ALICE), PushMessage(to=ALICE)])
    expo.receipt_errors(first.id, error="MessageRateExceeded")

    by_id = {receipt.id: receipt for receipt in client.check_receipts_multiple([first, second])}

    with pytest.raises(MessageRateExceededError):
        by_id[first.id].validate_response()
    by_id[second.id].validate_response()


def test_unregister_after_send_turns_receipts_into_errors(
    expo: ExpoDouble, client: PushClient
) -> None:
    ticket = client.publish(PushMessage(to=CAROL))
    ticket.validate_response()
    expo.unregister(CAROL)

    (receipt,) = client.check_receipts_multiple([ticket])

    with pytest.raises(DeviceNotRegisteredError):
        receipt.validate_response()


def test_receipt_errors_refuses_unknown_error(expo: ExpoDouble) -> None:
    with pytest.raises(ValueError, match="unknown Expo receipt error"):
        expo.receipt_errors(ALICE, error="DeviceNotRegisterd")


def test_receipts_fail_next(expo: ExpoDouble, client: PushClient) -> None:
    ticket = client.publish(PushMessage(to=ALICE))
    expo.fail_next(status=503, endpoint="getReceipts")

    with pytest.raises(PushServerError) as caught:
        client.check_receipts_multiple([ticket])
    assert caught.value.response.status_code == 503
    assert [r.status for r in client.check_receipts_multiple([ticket])] == ["ok"]
    assert expo.requests == 1  # receipt requests are counted apart


def test_over_1000_receipt_ids_is_400(expo: ExpoDouble) -> None:
    status, body = post(expo.url + RECEIPTS_PATH, {"ids": [str(i) for i in range(1001)]})

    assert (status, body["errors"][0]["code"]) == (400, "PUSH_TOO_MANY_RECEIPTS")


def test_malformed_receipts_request_is_400(expo: ExpoDouble) -> None:
    status, body = post(expo.url + RECEIPTS_PATH, {"ids": "abc"})

    assert (status, body["errors"][0]["code"]) == (400, "VALIDATION_ERROR")


# ---------------------------------------------------------------- recording helpers


def test_wait_for_messages_sees_a_send_from_another_thread(
    expo: ExpoDouble, client: PushClient
) -> None:
    sender = threading.Timer(0.1, lambda: client.publish(PushMessage(to=ALICE, body="late")))
    sender.start()
    try:
        messages = expo.wait_for_messages(1, timeout=5)
    finally:
        sender.join()
    assert messages == [{"to": ALICE, "body": "late"}]


def test_wait_for_messages_times_out(expo: ExpoDouble) -> None:
    with pytest.raises(TimeoutError):
        expo.wait_for_messages(1, timeout=0.1)


def test_clear_forgets_messages_and_counts_but_keeps_behaviours(
    expo: ExpoDouble, client: PushClient
) -> None:
    client.publish(PushMessage(to=ALICE))
    expo.unregister(BOB)

    expo.clear()

    assert (expo.messages, expo.requests, expo.receipt_requests) == ([], 0, 0)
    with pytest.raises(DeviceNotRegisteredError):
        client.publish(PushMessage(to=BOB)).validate_response()


def test_url_before_start_and_restart_refused() -> None:
    double = ExpoDouble()
    with pytest.raises(RuntimeError, match="not started"):
        _ = double.url
    with double, pytest.raises(RuntimeError, match="already started"):
        double.start()


# ---------------------------------------------------------------- as its own process


def test_main_serves_until_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tools.expo_double", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        push_client = PushClient(host=url)
        try:
            push_client.publish(PushMessage(to=ALICE)).validate_response()
        finally:
            push_client.session.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
