"""Server-assigned ids: a short kind prefix and 96 random bits, url-safe.

They match the contract's id pattern `[A-Za-z0-9_-]{1,64}` by construction.
"""

import re
import secrets

ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
ID_RE = re.compile(ID_PATTERN)


def new_id(prefix: str) -> str:
    return f"{prefix}{secrets.token_urlsafe(12)}"


def is_valid_id(value: object) -> bool:
    return isinstance(value, str) and ID_RE.fullmatch(value) is not None
