"""One error shape for every failure: `{"error": {"code", "message"}}` with a 4xx.

Bad input never becomes a 500: validation errors are 422 `invalid_payload`, an
unreachable database or broker is 503, and anything unexpected is logged with
its trace and answered 500 `internal` (a bug, not the client's fault).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from bridge.provisioning import ProvisioningError

log = logging.getLogger(__name__)

# The contract's rejection codes, as HTTP statuses.
STATUS_FOR_CODE = {
    "not_member": 403,
    "unknown_conversation": 404,
    "invalid_payload": 422,
    "too_large": 413,
    "unknown_media": 422,
    "rate_limited": 429,
}


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers

    @classmethod
    def rejection(cls, code: str, message: str) -> ApiError:
        return cls(STATUS_FOR_CODE.get(code, 400), code, message)


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def _validation_message(exc: RequestValidationError) -> str:
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    return f"{where or 'request'}: {first.get('msg', 'invalid')}"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_r: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_r: Request, exc: RequestValidationError) -> JSONResponse:
        too_large = any(e.get("type") == "too_large" for e in exc.errors())
        if too_large:
            return error_response(413, "too_large", _validation_message(exc))
        return error_response(422, "invalid_payload", _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_r: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:
            # FastAPI's "error parsing the body" (e.g. JSON nested too deep).
            return error_response(422, "invalid_payload", str(exc.detail))
        codes = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed"}
        return error_response(
            exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail)
        )

    @app.exception_handler(OperationalError)
    async def _db_down(_r: Request, exc: OperationalError) -> JSONResponse:
        log.warning("database unavailable: %s", exc.orig)
        return error_response(503, "unavailable", "the database is unavailable; retry")

    @app.exception_handler(PoolTimeout)
    async def _db_busy(_r: Request, _exc: PoolTimeout) -> JSONResponse:
        # Every pooled connection stayed busy past the pool's timeout (a burst
        # of thousands of reconnecting devices catching up at once): say so and
        # when to retry, rather than fail as a server error.
        log.warning("every database connection busy; answered 503")
        return error_response(
            503, "busy", "the server is busy; retry shortly", {"Retry-After": "1"}
        )

    @app.exception_handler(ProvisioningError)
    async def _broker_down(_r: Request, exc: ProvisioningError) -> JSONResponse:
        log.warning("broker provisioning failed: %s", exc)
        return error_response(503, "unavailable", "the broker is unavailable; retry")
