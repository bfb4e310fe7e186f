"""Call payloads: what the app sends is strict; what it receives has `from`."""

import json

import pytest

from bridge.wire.base import WireError, decode
from bridge.wire.calls import AcceptUp, CallEvent, EmptyUp, InviteUp, RecordUp


def test_invite_is_strict() -> None:
    assert decode(InviteUp, b'{"to": "u_1", "media": "video"}') == InviteUp(to="u_1", media="video")
    for bad in (
        b'{"to": "u_1"}',
        b'{"to": "u_1", "media": "fax"}',
        b'{"to": "u/1", "media": "audio"}',
        b'{"to": "u_1", "media": "audio", "extra": 1}',
        b'{"to": 5, "media": "audio"}',
    ):
        with pytest.raises(WireError) as error:
            decode(InviteUp, bad)
        assert error.value.code == "invalid_payload"


def test_empty_and_record_bodies() -> None:
    assert decode(EmptyUp, b"{}") == EmptyUp()
    with pytest.raises(WireError):
        decode(EmptyUp, b'{"reason": "busy"}')
    with pytest.raises(WireError):
        decode(RecordUp, b'{"recording": "yes"}')
    with pytest.raises(WireError):
        decode(AcceptUp, b"{}")


def test_events_say_from_on_the_wire() -> None:
    event = CallEvent(event="incoming", call_id="k", from_="u_a", to="u_b", media="audio")
    wire = json.loads(event.model_dump_json())
    assert wire["from"] == "u_a" and "from_" not in wire
    assert CallEvent.model_validate_json(event.model_dump_json()) == event
