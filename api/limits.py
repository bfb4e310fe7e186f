"""The API's rate limits: messages sent over HTTP, logins and registrations.

Messages use the same per-user token bucket as the persistence service. Logins
are limited per client address and username (guessing one account's password)
and per address (trying many accounts); registrations per address. The client
address is the connection's peer: behind a reverse proxy, run uvicorn with
proxy headers trusted from that proxy only (docs/deploy.md), or every client
shares the proxy's address.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request

from api.deps import StateDep
from api.errors import ApiError
from core.config import Settings
from core.ratelimit import KeyedLimit, Verdict, message_limit

# An address may try this many times more logins than one username from it:
# a shared NAT holds many honest users.
LOGINS_PER_ADDRESS_FACTOR = 5


@dataclass(frozen=True)
class ApiLimits:
    messages: KeyedLimit
    logins: KeyedLimit
    logins_per_address: KeyedLimit
    registrations: KeyedLimit

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiLimits:
        minute, hour = timedelta(minutes=1), timedelta(hours=1)
        logins = settings.login_attempts_per_minute
        return cls(
            messages=message_limit(settings.message_rate_per_second, settings.message_rate_burst),
            logins=KeyedLimit(logins, minute),
            logins_per_address=KeyedLimit(logins * LOGINS_PER_ADDRESS_FACTOR, minute),
            registrations=KeyedLimit(settings.registrations_per_hour, hour),
        )


def refuse_if_limited(verdict: Verdict, what: str) -> None:
    if not verdict.allowed:
        raise ApiError(
            429,
            "rate_limited",
            f"too many {what}; retry in {verdict.retry_after_seconds} s",
            headers={"Retry-After": str(verdict.retry_after_seconds)},
        )


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def limit_registrations(request: Request, state: StateDep) -> None:
    refuse_if_limited(state.limits.registrations.hit(client_address(request)), "registrations")


RegistrationLimit = Annotated[None, Depends(limit_registrations)]


def limit_login(state: StateDep, address: str, username: str) -> None:
    """Both buckets are charged, so a refused attempt still counts against the address."""
    per_account = state.limits.logins.hit(f"{address}|{username.casefold()}")
    per_address = state.limits.logins_per_address.hit(address)
    refuse_if_limited(per_account, "login attempts")
    refuse_if_limited(per_address, "login attempts from this address")
