"""Property-based tests of MQTT payload validation (`decode`), no broker needed.

Whatever bytes a client publishes, `decode` either returns a model or raises
`WireError` with a contract rejection code; valid sends round-trip; every rule of
the contract (unknown fields, limits, strict types, UTF-8) holds for generated
input, not only for the hand-picked payloads of the integration tests.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from bridge.wire.base import MAX_PAYLOAD_BYTES, MAX_TEXT_CHARS, WireError, decode
from bridge.wire.messaging import ReadUp, SendMessage, TypingUp
from core.ids import is_valid_id

# Fast, and no example database (Hypothesis still keeps its gitignored .hypothesis/ cache).
FAST = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

SEND_FIELDS = frozenset(SendMessage.model_fields)
MEDIA_KINDS = ("image", "audio", "file")
CODES = frozenset({"invalid_payload", "too_large"})
WHITESPACE = "".join(ch for ch in map(chr, range(sys.maxunicode + 1)) if ch.isspace())
# Every code point a text may hold: UTF-8 encodable (no lone surrogates), not NUL.
ENCODABLE = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")

# --- strategies -----------------------------------------------------------------------

ids = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)
bad_ids = st.one_of(
    st.just(""),
    st.just("x" * 65),
    st.sampled_from(["a/b", "a+b", "#", "a b", "é", "a\n", "\na", "id.1", "a\x00"]),
    st.text(min_size=1, max_size=80).filter(lambda s: not is_valid_id(s)),
)
non_blank_text = st.text(alphabet=ENCODABLE, min_size=1, max_size=200).filter(str.strip)
long_valid_text = st.tuples(
    st.text(alphabet=ENCODABLE, min_size=1, max_size=8).filter(str.strip),
    st.integers(MAX_TEXT_CHARS - 10, MAX_TEXT_CHARS),
).map(lambda t: (t[0] * MAX_TEXT_CHARS)[: t[1]])
valid_text = st.one_of(non_blank_text, long_valid_text)
too_long_text = st.tuples(
    st.text(alphabet=ENCODABLE, min_size=1, max_size=8),
    st.integers(MAX_TEXT_CHARS + 1, MAX_TEXT_CHARS + 1000),
).map(lambda t: (t[0] * (MAX_TEXT_CHARS + 1000))[: t[1]])
blank_text = st.text(alphabet=WHITESPACE, max_size=50)

json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
)
json_values = st.recursive(
    json_leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.text(max_size=10), children, max_size=5),
    ),
    max_leaves=25,
)
json_objects = st.dictionaries(st.text(max_size=10), json_values, max_size=6)
# Objects whose keys are mostly the real field names, so validation goes deep.
field_keys = st.one_of(
    st.sampled_from(sorted(SEND_FIELDS | {"seq", "typing"})), st.text(max_size=10)
)
field_values = st.one_of(
    json_values,
    ids,
    st.sampled_from(["text", "image", "audio", "file", "video", ""]),
    valid_text,
    blank_text,
)
fieldish_objects = st.dictionaries(field_keys, field_values, max_size=7)


@st.composite
def valid_sends(draw: st.DrawFn) -> dict[str, Any]:
    """A send the contract accepts, as the JSON object a client would publish."""
    kind = draw(st.sampled_from(("text", *MEDIA_KINDS)))
    send: dict[str, Any] = {"client_msg_id": draw(ids), "kind": kind}
    if kind == "text":
        send["text"] = draw(valid_text)
    else:
        send["media_id"] = draw(ids)
        caption = draw(st.none() | valid_text)
        if caption is not None or draw(st.booleans()):
            send["text"] = caption
    if draw(st.booleans()):
        send["reply_to"] = draw(ids)
    elif draw(st.booleans()):
        send["reply_to"] = None
    return send


def _bytes(document: Any, *, ascii_only: bool = True) -> bytes:
    return json.dumps(document, ensure_ascii=ascii_only).encode("utf-8")


def _rejects(model: type[Any], payload: bytes) -> WireError:
    with pytest.raises(WireError) as caught:
        decode(model, payload)
    return caught.value


def _is_utf8(payload: bytes) -> bool:
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _decode_or_wire_error(model: type[Any], payload: bytes) -> WireError | None:
    """Decode; only `WireError` may escape, with a contract code."""
    try:
        result = decode(model, payload)
    except WireError as error:
        assert error.code in CODES, error.code
        assert isinstance(error.message, str) and error.message
        assert error.client_msg_id is None or is_valid_id(error.client_msg_id)
        return error
    assert isinstance(result, model)
    return None


# --- nothing but WireError ------------------------------------------------------------


@FAST
@given(payload=st.binary(max_size=2048))
@example(payload=b"")
@example(payload=b"\xef\xbb\xbf{}")  # a BOM is not part of the object
@example(payload=b"null")
@example(payload=b"NaN")
@example(payload=b'"\\ud800"')
def test_arbitrary_bytes_only_raise_wire_error(payload: bytes) -> None:
    for model in (SendMessage, ReadUp, TypingUp):
        _decode_or_wire_error(model, payload)


@FAST
@given(value=json_values, ascii_only=st.booleans())
def test_arbitrary_json_values_only_raise_wire_error(value: Any, ascii_only: bool) -> None:
    try:
        payload = _bytes(value, ascii_only=ascii_only)
    except UnicodeEncodeError:
        payload = _bytes(value)  # a lone surrogate: only the escaped form is bytes
    for model in (SendMessage, ReadUp, TypingUp):
        error = _decode_or_wire_error(model, payload)
        if not isinstance(value, dict):
            assert error is not None and error.code == "invalid_payload"
            assert error.client_msg_id is None


@FAST
@given(document=st.one_of(json_objects, fieldish_objects))
def test_objects_with_random_keys_only_raise_wire_error(document: dict[str, Any]) -> None:
    payload = _bytes(document)
    for model in (SendMessage, ReadUp, TypingUp):
        error = _decode_or_wire_error(model, payload)
        if error is not None and model is SendMessage and len(payload) <= MAX_PAYLOAD_BYTES:
            # The client_msg_id is echoed exactly when a parsed payload carries a valid one.
            cmid = document.get("client_msg_id")
            assert error.client_msg_id == (cmid if is_valid_id(cmid) else None)


# --- valid sends ----------------------------------------------------------------------


@FAST
@given(send=valid_sends(), ascii_only=st.booleans())
def test_every_valid_send_decodes_and_round_trips(send: dict[str, Any], ascii_only: bool) -> None:
    decoded = decode(SendMessage, _bytes(send, ascii_only=ascii_only))
    assert decoded.model_dump(exclude_unset=True) == send
    assert decode(SendMessage, _bytes(decoded.model_dump())) == decoded
    assert decode(SendMessage, decoded.model_dump_json().encode()) == decoded


@FAST
@given(send=valid_sends(), key=st.text(max_size=20), value=json_values)
@example(send={"client_msg_id": "k", "kind": "text", "text": "x"}, key="Text", value="x")
@example(send={"client_msg_id": "k", "kind": "text", "text": "x"}, key="", value=None)
@example(send={"client_msg_id": "k", "kind": "text", "text": "x"}, key="text ", value="x")
def test_an_unknown_key_is_invalid_and_keeps_the_client_msg_id(
    send: dict[str, Any], key: str, value: Any
) -> None:
    assume(key not in SEND_FIELDS)
    error = _rejects(SendMessage, _bytes({**send, key: value}))
    assert error.code == "invalid_payload"
    assert error.client_msg_id == send["client_msg_id"]


# --- field rules ----------------------------------------------------------------------


@FAST
@given(send=valid_sends(), text=too_long_text)
def test_text_over_the_limit_is_too_large(send: dict[str, Any], text: str) -> None:
    payload = _bytes({**send, "text": text}, ascii_only=False)
    assert len(payload) <= MAX_PAYLOAD_BYTES  # the text rule, not the payload rule
    error = _rejects(SendMessage, payload)
    assert (error.code, error.client_msg_id) == ("too_large", send["client_msg_id"])


@FAST
@given(send=valid_sends(), text=blank_text)
@example(send={"client_msg_id": "k", "kind": "text", "text": "x"}, text="")
@example(send={"client_msg_id": "k", "kind": "image", "media_id": "m"}, text=" \u3000\u2028")
def test_blank_text_is_invalid(send: dict[str, Any], text: str) -> None:
    error = _rejects(SendMessage, _bytes({**send, "text": text}))
    assert (error.code, error.client_msg_id) == ("invalid_payload", send["client_msg_id"])


def _not_a_string() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.lists(json_values, max_size=3),
        st.dictionaries(st.text(max_size=5), json_values, max_size=3),
    )


@FAST
@given(
    send=valid_sends(),
    field=st.sampled_from(sorted(SEND_FIELDS)),
    wrong=_not_a_string(),
)
def test_a_wrong_json_type_in_any_field_is_invalid(
    send: dict[str, Any], field: str, wrong: Any
) -> None:
    error = _rejects(SendMessage, _bytes({**send, field: wrong}))
    assert error.code == "invalid_payload"
    kept = None if field == "client_msg_id" else send["client_msg_id"]
    assert error.client_msg_id == kept


@FAST
@given(send=valid_sends(), field=st.sampled_from(["client_msg_id", "kind"]))
def test_required_fields_are_required_and_not_nullable(send: dict[str, Any], field: str) -> None:
    kept = None if field == "client_msg_id" else send["client_msg_id"]
    for document in ({**send, field: None}, {k: v for k, v in send.items() if k != field}):
        error = _rejects(SendMessage, _bytes(document))
        assert (error.code, error.client_msg_id) == ("invalid_payload", kept)


@FAST
@given(
    send=valid_sends(),
    field=st.sampled_from(["client_msg_id", "media_id", "reply_to"]),
    bad=bad_ids,
)
def test_an_id_outside_the_pattern_is_invalid(send: dict[str, Any], field: str, bad: str) -> None:
    try:
        payload = _bytes({**send, field: bad}, ascii_only=False)
    except UnicodeEncodeError:
        payload = _bytes({**send, field: bad})
    error = _rejects(SendMessage, payload)
    assert error.code == "invalid_payload"
    assert error.client_msg_id == (None if field == "client_msg_id" else send["client_msg_id"])


@FAST
@given(
    send=valid_sends(),
    kind=st.one_of(
        st.sampled_from(["Text", "IMAGE", "video", "", " text", "sticker"]),
        st.text(max_size=10).filter(lambda k: k not in ("text", *MEDIA_KINDS)),
    ),
)
def test_an_unknown_kind_is_invalid(send: dict[str, Any], kind: str) -> None:
    error = _rejects(SendMessage, _bytes({**send, "kind": kind}))
    assert (error.code, error.client_msg_id) == ("invalid_payload", send["client_msg_id"])


@FAST
@given(cmid=ids, media_id=ids, text=st.none() | valid_text)
def test_kind_rules(cmid: str, media_id: str, text: str | None) -> None:
    # A text message needs text and carries no media.
    no_text = _rejects(SendMessage, _bytes({"client_msg_id": cmid, "kind": "text"}))
    assert (no_text.code, no_text.client_msg_id) == ("invalid_payload", cmid)
    with_media = {"client_msg_id": cmid, "kind": "text", "text": text or "x", "media_id": media_id}
    assert _rejects(SendMessage, _bytes(with_media)).code == "invalid_payload"
    # Every other kind needs a media id (the text is an optional caption).
    for kind in MEDIA_KINDS:
        error = _rejects(SendMessage, _bytes({"client_msg_id": cmid, "kind": kind, "text": text}))
        assert (error.code, error.client_msg_id) == ("invalid_payload", cmid)


# --- payload-level rules --------------------------------------------------------------


@FAST
@given(send=valid_sends(), extra=st.integers(1, 4 * MAX_PAYLOAD_BYTES))
def test_a_payload_over_64_kib_is_too_large(send: dict[str, Any], extra: int) -> None:
    body = _bytes(send)
    padded = body + b" " * (MAX_PAYLOAD_BYTES - len(body) + extra)
    assert len(padded) > MAX_PAYLOAD_BYTES
    assert _rejects(SendMessage, padded).code == "too_large"
    # Exactly at the limit is still fine: JSON allows trailing whitespace.
    at_limit = body + b" " * (MAX_PAYLOAD_BYTES - len(body))
    assert decode(SendMessage, at_limit).client_msg_id == send["client_msg_id"]


@FAST
@given(
    prefix=st.binary(max_size=256),
    filler=st.integers(0, 255),
    size=st.integers(MAX_PAYLOAD_BYTES + 1, MAX_PAYLOAD_BYTES + 4096),
)
def test_any_oversized_bytes_are_too_large(prefix: bytes, filler: int, size: int) -> None:
    # Checked before anything else: even invalid UTF-8 or non-JSON is `too_large`.
    payload = prefix + bytes([filler]) * (size - len(prefix))
    for model in (SendMessage, ReadUp, TypingUp):
        error = _rejects(model, payload)
        assert (error.code, error.client_msg_id) == ("too_large", None)


INVALID_UTF8 = [
    b"\xff",
    b"\xfe",
    b"\x80",  # a lone continuation byte
    b"\xc0\x80",  # an overlong NUL
    b"\xc3",  # a truncated sequence
    b"\xe2\x82",
    b"\xed\xa0\x80",  # an encoded surrogate
    b"\xf4\x90\x80\x80",  # past U+10FFFF
]


@FAST
@given(
    send=valid_sends(),
    bad=st.sampled_from(INVALID_UTF8),
    where=st.floats(0, 1),
    ascii_only=st.booleans(),
)
def test_invalid_utf8_is_invalid_without_client_msg_id(
    send: dict[str, Any], bad: bytes, where: float, ascii_only: bool
) -> None:
    body = _bytes(send, ascii_only=ascii_only)
    cut = round(where * len(body))
    # Land between whole characters, so the only fault is the inserted bytes.
    while cut < len(body) and (body[cut] & 0xC0) == 0x80:
        cut += 1
    payload = body[:cut] + bad + body[cut:]
    for model in (SendMessage, ReadUp, TypingUp):
        error = _rejects(model, payload)
        assert (error.code, error.client_msg_id) == ("invalid_payload", None)


@FAST
@given(payload=st.binary(min_size=1, max_size=512))
def test_any_non_utf8_bytes_are_invalid(payload: bytes) -> None:
    assume(not _is_utf8(payload))
    error = _rejects(SendMessage, payload)
    assert (error.code, error.client_msg_id) == ("invalid_payload", None)


@FAST
@given(cmid=ids, surrogate=st.integers(0xD800, 0xDFFF))
def test_a_lone_surrogate_in_text_is_invalid(cmid: str, surrogate: int) -> None:
    payload = _bytes({"client_msg_id": cmid, "kind": "text", "text": f"a{chr(surrogate)}b"})
    assert f"\\u{surrogate:04x}".encode() in payload
    error = _rejects(SendMessage, payload)
    assert (error.code, error.client_msg_id) == ("invalid_payload", cmid)


@FAST
@given(cmid=ids, before=st.text(alphabet=ENCODABLE), after=st.text(alphabet=ENCODABLE))
def test_a_nul_anywhere_in_text_is_invalid(cmid: str, before: str, after: str) -> None:
    payload = _bytes({"client_msg_id": cmid, "kind": "text", "text": f"{before}\x00{after}x"})
    error = _rejects(SendMessage, payload)
    assert (error.code, error.client_msg_id) == ("invalid_payload", cmid)


# --- read receipts and typing ---------------------------------------------------------


@FAST
@given(seq=st.integers(-(2**63), 2**63))
def test_read_up_takes_any_json_integer(seq: int) -> None:
    assert decode(ReadUp, _bytes({"seq": seq})) == ReadUp(seq=seq)


@pytest.mark.parametrize(
    "payload",
    [
        b'{"seq": "3"}',
        b'{"seq": 1.0}',
        b'{"seq": 3.5}',
        b'{"seq": 1e3}',
        b'{"seq": true}',
        b'{"seq": null}',
        b'{"seq": [3]}',
        b'{"seq": {"n": 3}}',
        b"{}",
        b'{"seq": 3, "extra": 1}',
        b'{"Seq": 3}',
        b"[3]",
        b"3",
    ],
)
def test_read_up_is_strict(payload: bytes) -> None:
    error = _rejects(ReadUp, payload)
    assert (error.code, error.client_msg_id) == ("invalid_payload", None)


@FAST
@given(seq=st.one_of(json_values.filter(lambda v: type(v) is not int), st.floats()))
def test_read_up_refuses_every_non_integer(seq: Any) -> None:
    error = _rejects(ReadUp, _bytes({"seq": seq}))
    assert error.code == "invalid_payload"


@FAST
@given(typing=st.booleans())
def test_typing_up_takes_a_bool(typing: bool) -> None:
    assert decode(TypingUp, _bytes({"typing": typing})) == TypingUp(typing=typing)


@pytest.mark.parametrize(
    "payload",
    [
        b'{"typing": 1}',
        b'{"typing": 0}',
        b'{"typing": "true"}',
        b'{"typing": "false"}',
        b'{"typing": null}',
        b'{"typing": 1.0}',
        b'{"typing": []}',
        b"{}",
        b'{"typing": true, "extra": 1}',
        b'{"typing": true, "seq": 1}',
        b"true",
    ],
)
def test_typing_up_is_strict(payload: bytes) -> None:
    error = _rejects(TypingUp, payload)
    assert (error.code, error.client_msg_id) == ("invalid_payload", None)


@FAST
@given(typing=json_values.filter(lambda v: not isinstance(v, bool)))
def test_typing_up_refuses_every_non_bool(typing: Any) -> None:
    assert _rejects(TypingUp, _bytes({"typing": typing})).code == "invalid_payload"


# --- JSON parser limits under the payload cap (product bugs) --------------------------

HUGE_INT = b"1" * 5000  # past Python's 4300-digit int conversion limit
DEEP = b"[" * 30_000 + b"]" * 30_000  # past the recursion limit, still under 64 KiB


@pytest.mark.parametrize(
    "payload",
    [
        HUGE_INT,
        b'{"seq": ' + HUGE_INT + b"}",
        b'{"client_msg_id": "k", "kind": "text", "text": "x", "n": ' + HUGE_INT + b"}",
    ],
)
def test_an_integer_past_the_digit_limit_is_a_wire_error(payload: bytes) -> None:
    assert len(payload) <= MAX_PAYLOAD_BYTES
    for model in (SendMessage, ReadUp, TypingUp):
        _decode_or_wire_error(model, payload)


@pytest.mark.parametrize(
    "payload",
    [DEEP, b'{"client_msg_id": "k", "kind": "text", "text": "x", "n": ' + DEEP + b"}"],
)
def test_deeply_nested_json_is_a_wire_error(payload: bytes) -> None:
    assert len(payload) <= MAX_PAYLOAD_BYTES
    for model in (SendMessage, ReadUp, TypingUp):
        _decode_or_wire_error(model, payload)
