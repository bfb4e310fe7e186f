"""Media against the real system: upload (the content decides the type), media
messages over MQTT, and who may download what."""

from __future__ import annotations

import asyncio
import io
import json
import random
from typing import Any

import httpx
import pytest
from PIL import Image

from bridge import topics
from bridge.mqtt import AsyncMqtt
from bridge.topics import UpKind
from tests.factories import ApiUser, register
from tests.integration.mqtt_helpers import drain, inbox, wait_for
from tools.stack import Stack

pytestmark = pytest.mark.anyio

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CONTRACT_MEDIA_KEYS = {"media_id", "mime", "size", "url", "name"}


def png_bytes(width: int = 32, height: int = 20) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (20, 120, 220)).save(buf, "PNG")
    return buf.getvalue()


def upload(
    user: ApiUser, data: bytes, name: str = "photo.png", content_type: str = "image/png"
) -> httpx.Response:
    return user.request("POST", "/v1/media", files={"file": (name, data, content_type)})


def uploaded(user: ApiUser, data: bytes, name: str = "photo.png") -> dict[str, Any]:
    response = upload(user, data, name)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def fetch(url: str, headers: dict[str, str] | None = None) -> httpx.Response:
    """A GET without the factories' bearer token."""
    return httpx.get(url, headers=headers, timeout=10)


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code and isinstance(error["message"], str), error


def media_send(cmid: str, kind: str, media_id: str, **extra: Any) -> bytes:
    return json.dumps({"client_msg_id": cmid, "kind": kind, "media_id": media_id, **extra}).encode()


async def collect(conn: AsyncMqtt, *suffixes: str, timeout: float = 5.0) -> dict[str, Any]:
    """The first message for each topic suffix, whatever order they arrive in."""
    found: dict[str, Any] = {}
    async with asyncio.timeout(timeout):
        while len(found) < len(suffixes):
            message = await conn.next_message()
            for suffix in suffixes:
                if suffix not in found and message.topic.endswith(suffix):
                    found[suffix] = json.loads(message.payload)
    return found


# --- upload ---------------------------------------------------------------------------


def test_png_named_pdf_is_stored_as_the_png_it_is(stack: Stack) -> None:
    alice = register(stack.config.api_url, "alice")
    data = png_bytes(32, 20)
    response = upload(alice, data, name="photo.pdf", content_type="application/pdf")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["mime"] == "image/png"
    assert (body["width"], body["height"]) == (32, 20)
    assert body["url"] == f"/v1/media/{body['media_id']}"
    assert body["size"] == len(data)
    assert body["name"] == "photo.pdf"  # the name is kept, only the verdict is the content's
    assert set(body) >= CONTRACT_MEDIA_KEYS


def test_text_and_binary_files_are_plain_files(stack: Stack) -> None:
    alice = register(stack.config.api_url, "alice")
    text = "Pick-up Saturday 10:00, Rue de la Paix 12.\nCash only. \u00e7a va?\n".encode()
    as_text = upload(alice, text, name="notes.txt", content_type="text/plain")
    assert as_text.status_code == 201, as_text.text
    assert (as_text.json()["mime"], as_text.json()["size"]) == ("text/plain", len(text))
    assert as_text.json()["width"] is None

    # Seeded, so the same bytes every run (no accidental magic number, no flakiness).
    noise = random.Random(20261127).randbytes(4096)
    claimed_jpeg = upload(alice, noise, name="noise.jpg", content_type="image/jpeg")
    assert claimed_jpeg.status_code == 201, claimed_jpeg.text
    assert claimed_jpeg.json()["mime"] == "application/octet-stream"
    assert claimed_jpeg.json()["size"] == len(noise)
    octet = upload(alice, noise, name="blob.bin", content_type="application/octet-stream")
    assert octet.status_code == 201 and octet.json()["mime"] == "application/octet-stream"
    assert octet.json()["media_id"] != claimed_jpeg.json()["media_id"]


def test_empty_and_fake_images_are_refused(stack: Stack) -> None:
    alice = register(stack.config.api_url, "alice")
    assert_error(upload(alice, b"", name="empty.png"), 422, "invalid_payload")
    fake_png = PNG_MAGIC + random.Random(7).randbytes(2000)
    assert_error(upload(alice, fake_png, name="fake.png"), 422, "invalid_payload")
    # A real PNG header cut short is not an image either.
    assert_error(upload(alice, png_bytes()[:30], name="cut.png"), 422, "invalid_payload")


def test_upload_without_the_file_field_is_a_json_422(stack: Stack) -> None:
    alice = register(stack.config.api_url, "alice")
    wrong_field = alice.request(
        "POST", "/v1/media", files={"upload": ("photo.png", png_bytes(), "image/png")}
    )
    assert_error(wrong_field, 422, "invalid_payload")
    form_only = alice.request("POST", "/v1/media", data={"file": "not a file"})
    assert_error(form_only, 422, "invalid_payload")
    nothing = alice.request("POST", "/v1/media")
    assert_error(nothing, 422, "invalid_payload")
    as_json = alice.request("POST", "/v1/media", json={"file": "aGVsbG8="})
    assert_error(as_json, 422, "invalid_payload")


def test_upload_needs_a_token(stack: Stack) -> None:
    response = httpx.post(
        f"{stack.config.api_url}/v1/media",
        files={"file": ("photo.png", png_bytes(), "image/png")},
        timeout=10,
    )
    assert_error(response, 401, "unauthorized")


# --- media messages over MQTT and download rights --------------------------------------


async def test_image_message_carries_its_media_and_opens_the_download(stack: Stack) -> None:
    api = stack.config.api_url
    alice, bob, eve = register(api, "alice"), register(api, "bob"), register(api, "eve")
    conv = alice.conversation(bob)
    data = png_bytes(32, 20)
    media = uploaded(alice, data, name="bike.png")
    unsent = uploaded(alice, png_bytes(8, 8), name="private.png")
    url = media["url"]

    # Before it is sent, only the uploader may fetch it.
    mine = alice.request("GET", url)
    assert mine.status_code == 200 and mine.content == data
    assert mine.headers["content-type"] == "image/png"
    assert_error(bob.request("GET", url), 404, "not_found")

    async with inbox(alice) as a, inbox(bob) as b:
        up = topics.conv_up(conv, UpKind.MSG, alice.user_id)
        await a.publish(up, media_send("img1", "image", media["media_id"], text="Still new"))
        # The sender's device gets the ack and the message, in either order.
        on_a = await collect(a, "/ack", f"/conv/{conv}/msg")
        assert on_a["/ack"]["status"] == "stored" and on_a["/ack"]["seq"] == 1, on_a
        for got in (on_a[f"/conv/{conv}/msg"], await wait_for(b, f"/conv/{conv}/msg")):
            assert got["client_msg_id"] == "img1"
            assert (got["kind"], got["text"], got["seq"]) == ("image", "Still new", 1)
            assert set(got["media"]) >= CONTRACT_MEDIA_KEYS
            assert {k: got["media"][k] for k in CONTRACT_MEDIA_KEYS} == {
                "media_id": media["media_id"],
                "mime": "image/png",
                "size": len(data),
                "url": f"/v1/media/{media['media_id']}",
                "name": "bike.png",
            }
        assert [m for m in await drain(b) if m.topic.endswith("/msg")] == []

    history = bob.request("GET", f"/v1/conversations/{conv}/messages").json()["messages"]
    assert [m["media"]["media_id"] for m in history] == [media["media_id"]]

    # A member of the conversation it was sent in: the same bytes.
    theirs = bob.request("GET", url)
    assert theirs.status_code == 200 and theirs.content == data
    assert theirs.headers["content-type"] == "image/png"
    # Everyone else sees the same 404 as for an id that does not exist.
    assert_error(eve.request("GET", url), 404, "not_found")
    assert_error(bob.request("GET", unsent["url"]), 404, "not_found")
    assert_error(bob.request("GET", "/v1/media/f_doesnotexist"), 404, "not_found")
    assert alice.request("GET", unsent["url"]).status_code == 200
    # No token, or a bad one.
    assert_error(fetch(api + url), 401, "unauthorized")
    assert_error(fetch(api + url, {"Authorization": "Bearer nope"}), 401, "unauthorized")
    truncated = {"Authorization": f"Bearer {alice.token[:-2]}"}
    assert_error(fetch(api + url, truncated), 401, "unauthorized")
    assert_error(fetch(f"{api}{url}?access_token={alice.token}"), 401, "unauthorized")


@pytest.mark.parametrize(
    "media_id",
    [
        "..%2Fetc",
        "..%2F..%2F..%2Fetc%2Fpasswd",
        "%2e%2e",
        "a%00b",
        "f_%E2%98%83",
        "x" * 65,
        "a%20b",
        "%5C..%5Cwin.ini",
    ],
)
def test_invalid_media_ids_are_a_4xx_never_a_500(stack: Stack, media_id: str) -> None:
    alice = register(stack.config.api_url, "alice")
    uploaded(alice, png_bytes())  # the user has media; none of it may be reached this way
    response = alice.request("GET", f"/v1/media/{media_id}")
    assert response.status_code in (404, 422), (response.status_code, response.text)
    assert "error" in response.json()


async def test_media_sends_are_checked_against_the_media(stack: Stack) -> None:
    api = stack.config.api_url
    alice, bob, eve = register(api, "alice"), register(api, "bob"), register(api, "eve")
    conv = alice.conversation(bob)
    with_eve = alice.conversation(eve)
    image = uploaded(alice, png_bytes(), name="lamp.png")
    bobs = uploaded(bob, png_bytes(16, 16), name="bobs.png")
    async with inbox(alice) as a, inbox(eve) as e:
        up = topics.conv_up(conv, UpKind.MSG, alice.user_id)

        # An image is not a voice note.
        await a.publish(up, media_send("m1", "audio", image["media_id"]))
        audio = await wait_for(a, "/ack", client_msg_id="m1")
        assert (audio["status"], audio["conv_id"]) == ("rejected", conv)
        assert audio["error"]["code"] == "invalid_payload"

        # Someone else's upload, even one that exists, is unknown to the sender;
        # tried in the conversation with eve, so a rejection must not open it to her.
        await a.publish(
            topics.conv_up(with_eve, UpKind.MSG, alice.user_id),
            media_send("m2", "image", bobs["media_id"]),
        )
        foreign = await wait_for(a, "/ack", client_msg_id="m2")
        assert (foreign["status"], foreign["conv_id"]) == ("rejected", with_eve)
        assert foreign["error"]["code"] == "unknown_media"
        await a.publish(up, media_send("m3", "file", bobs["media_id"]))
        assert (await wait_for(a, "/ack", client_msg_id="m3"))["error"]["code"] == "unknown_media"

        # A "file" message takes any media of one's own; a rejected send used no seq.
        await a.publish(up, media_send("m4", "file", image["media_id"]))
        stored = await wait_for(a, "/ack", client_msg_id="m4")
        assert (stored["status"], stored["seq"]) == ("stored", 1), stored
        assert [m for m in await drain(e) if m.topic.endswith("/msg")] == []

    assert_error(eve.request("GET", bobs["url"]), 404, "not_found")
    assert_error(alice.request("GET", bobs["url"]), 404, "not_found")
    assert eve.request("GET", f"/v1/conversations/{with_eve}/messages").json()["messages"] == []
    assert bob.request("GET", image["url"]).status_code == 200  # sent as a file in conv
    assert_error(eve.request("GET", image["url"]), 404, "not_found")
