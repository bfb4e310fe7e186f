"""The base of every wire model, the shared field types, and payload decoding."""

from __future__ import annotations

import json
from typing import Annotated, Any, Final, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints, ValidationError

from core.ids import ID_PATTERN, is_valid_id

MAX_PAYLOAD_BYTES: Final = 64 * 1024
MAX_TEXT_CHARS: Final = 4000


class WireModel(BaseModel):
    """Strict: no unknown fields, no type coercion (`"1"` is not `1`)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _encodable(value: str) -> str:
    # JSON may carry lone surrogates ("\ud800"), which are not UTF-8, and NUL
    # ("\u0000"), which PostgreSQL's text cannot hold: refuse both here rather
    # than fail later while storing or publishing (a NUL failed its whole batch).
    value.encode("utf-8")
    if "\x00" in value:
        raise ValueError("text contains a NUL character")
    return value


Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
Text = Annotated[str, AfterValidator(_encodable)]


class WireError(Exception):
    """A payload the contract rejects; `code` is the rejection code."""

    def __init__(self, code: str, message: str, *, client_msg_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.client_msg_id = client_msg_id


M = TypeVar("M", bound=WireModel)


def parse_object(payload: bytes) -> dict[str, Any]:
    """Bytes -> JSON object, or `WireError` (invalid UTF-8, bad JSON, not an object)."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise WireError("too_large", f"payload over {MAX_PAYLOAD_BYTES} bytes")
    try:
        document = json.loads(payload.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise WireError("invalid_payload", "payload is not UTF-8") from exc
    except json.JSONDecodeError as exc:
        raise WireError("invalid_payload", f"payload is not JSON: {exc.msg}") from exc
    except (ValueError, RecursionError) as exc:
        # Valid JSON the parser still refuses: integers past Python's digit limit,
        # nesting deeper than the recursion limit.
        raise WireError("invalid_payload", f"payload cannot be parsed: {exc}") from exc
    if not isinstance(document, dict):
        raise WireError("invalid_payload", "payload must be a JSON object")
    return document


def validate(model: type[M], document: dict[str, Any]) -> M:
    """Dict -> model, translating pydantic's errors into one `WireError`."""
    client_msg_id = document.get("client_msg_id")
    known_id = client_msg_id if is_valid_id(client_msg_id) else None
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        code = "too_large" if first["type"] == "too_large" else "invalid_payload"
        where = ".".join(str(part) for part in first["loc"]) or "payload"
        raise WireError(code, f"{where}: {first['msg']}", client_msg_id=known_id) from exc


def decode(model: type[M], payload: bytes) -> M:
    return validate(model, parse_object(payload))
