"""Sending to Expo's push API with the official SDK (`exponent_server_sdk`).

The SDK is synchronous (requests), so each request runs in a worker thread.
Delivery rules:
- at most 100 messages per request (Expo's limit), one request per chunk, so a
  failed chunk is retried alone and no notification Expo already accepted is
  sent twice;
- a request that fails as a whole (429, 5xx, a network error: nothing in it
  was accepted) is retried with exponential backoff; other failures are given
  up on and logged;
- tickets: `DeviceNotRegistered` means the token is dead (the caller drops it);
  accepted tickets are returned so their receipts can be checked later.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import requests
from exponent_server_sdk import (
    DeviceNotRegisteredError,
    PushClient,
    PushMessage,
    PushServerError,
    PushTicket,
    PushTicketError,
)

from core import metrics

log = logging.getLogger(__name__)

CHUNK = 100
RETRIES = 5
FIRST_BACKOFF_SECONDS = 0.5
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass
class SendReport:
    accepted: list[tuple[str, str]] = field(default_factory=list)  # (ticket id, token)
    dead_tokens: list[str] = field(default_factory=list)
    failed: int = 0
    requests: int = 0


class ExpoSender:
    def __init__(self, host: str, access_token: str = "") -> None:
        session = requests.Session()
        session.headers.update(
            {
                "accept": "application/json",
                "accept-encoding": "gzip, deflate",
                "content-type": "application/json",
            }
        )
        if access_token:
            session.headers["Authorization"] = f"Bearer {access_token}"
        self._client = PushClient(host=host, session=session)

    async def send(self, messages: Sequence[PushMessage]) -> SendReport:
        report = SendReport()
        for start in range(0, len(messages), CHUNK):
            chunk = list(messages[start : start + CHUNK])
            tickets = await self._send_chunk(chunk, report)
            if tickets is None:
                report.failed += len(chunk)
                continue
            for ticket in tickets:
                _read_ticket(ticket, report)
        return report

    async def _send_chunk(
        self, chunk: list[PushMessage], report: SendReport
    ) -> list[PushTicket] | None:
        delay = FIRST_BACKOFF_SECONDS
        for attempt in range(1, RETRIES + 1):
            report.requests += 1
            try:
                started = time.perf_counter()
                tickets: list[PushTicket] = await asyncio.to_thread(
                    self._client.publish_multiple, chunk
                )
                metrics.PUSH_REQUEST_SECONDS.observe(time.perf_counter() - started)
                return tickets
            except (PushServerError, requests.HTTPError) as error:
                # PushServerError for Expo's JSON errors, HTTPError for bare ones.
                status = getattr(error.response, "status_code", None)
                if status not in RETRY_STATUSES or attempt == RETRIES:
                    log.error("Expo refused %d notifications: %s (%s)", len(chunk), error, status)
                    return None
                log.warning("Expo answered %s; retrying in %.1fs", status, delay)
            except (requests.ConnectionError, requests.Timeout) as error:
                if attempt == RETRIES:
                    log.error("Expo unreachable, %d notifications lost: %s", len(chunk), error)
                    return None
                log.warning("Expo unreachable (%s); retrying in %.1fs", error, delay)
            await asyncio.sleep(delay)
            delay *= 2
        return None

    async def receipts(self, tickets: Sequence[tuple[str, str]]) -> list[str]:
        """Check receipts of accepted tickets; the tokens found dead."""
        if not tickets:
            return []
        token_of = dict(tickets)
        pushed = [PushTicket(None, PushTicket.SUCCESS_STATUS, "", None, i) for i, _ in tickets]
        try:
            receipts = await asyncio.to_thread(self._client.check_receipts_multiple, pushed)
        except (PushServerError, requests.RequestException) as error:
            log.warning("receipts not checked this time: %s", error)
            return []
        dead = []
        for receipt in receipts:
            try:
                receipt.validate_response()
            except DeviceNotRegisteredError:
                dead.append(token_of[receipt.id])
            except PushTicketError as error:
                log.warning("push %s failed: %s", receipt.id, error)
        return dead


def _read_ticket(ticket: PushTicket, report: SendReport) -> None:
    token = ticket.push_message.to
    try:
        ticket.validate_response()
    except DeviceNotRegisteredError:
        report.dead_tokens.append(token)
    except PushTicketError as error:
        report.failed += 1
        log.warning("Expo did not take a push to %s: %s", token, error)
    else:
        report.accepted.append((ticket.id, token))
