"""Maps domain outcomes and request errors to HTTP at the edge: every error is JSON, never a 500."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from producers.api.gateway import GatewayUnavailable, OutcomeTimeout

# Rejection reasons that are the client's input rather than a state conflict.
_STATUS_BY_REASON = {
    "account_not_found": 404,
    "not_owner": 403,
    "staff_only": 403,
    "version_mismatch": 412,
    "invalid_amount": 422,
    "invalid_currency": 422,
    "invalid_owner_id": 422,
    "invalid_reference": 422,
    "invalid_overdraft_limit": 422,
    "idempotency_key_reused": 422,
}


class ErrorBody(BaseModel):
    error: str
    detail: str


class InvalidHeader(Exception):
    def __init__(self, header: str, message: str) -> None:
        super().__init__(f"{header}: {message}")
        self.header, self.message = header, message


class CommandRejected(Exception):
    def __init__(self, reason: str, detail: str, version: int | None) -> None:
        super().__init__(detail)
        self.reason, self.detail, self.version = reason, detail, version

    @property
    def status_code(self) -> int:
        return _STATUS_BY_REASON.get(self.reason, 409)


def error_body(error: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {"error": error, "detail": detail, **extra}


def _field(error: Any) -> dict[str, str]:
    loc = tuple(error.get("loc") or ("body",))
    where = str(loc[0])
    if error.get("type") == "json_invalid":
        return {"field": "body", "in": "body", "message": f"invalid JSON at character {loc[-1]}"}
    name = ".".join(str(p) for p in loc[1:]) or where
    return {"field": name, "in": where, "message": str(error.get("msg", "invalid"))}


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    fields = [_field(e) for e in exc.errors()]
    detail = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
    return JSONResponse(error_body("validation_error", detail, fields=fields), status_code=422)


async def _invalid_header(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InvalidHeader)
    return JSONResponse(
        error_body(
            "validation_error",
            str(exc),
            fields=[{"field": exc.header, "in": "header", "message": exc.message}],
        ),
        status_code=422,
    )


# Errors raised by the framework (routing, body reading) and by our own edge checks.
_ERROR_BY_STATUS = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def _unparsable(cause: BaseException | None) -> str:
    """Why FastAPI could not read a body as JSON (it says only "error parsing the body")."""
    if isinstance(cause, UnicodeDecodeError):
        return f"the body is not UTF-8 (byte {cause.start})"
    if isinstance(cause, RecursionError):
        return "the JSON is nested too deeply"
    if isinstance(cause, ValueError):  # e.g. an integer of more than 4,300 digits
        return f"the JSON cannot be read: {cause}"
    return "the body cannot be read as JSON"


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400 and exc.__cause__ is not None:
        # A body that is not JSON at all gets the same answer as malformed JSON: 422, field `body`.
        message = _unparsable(exc.__cause__)
        fields = [{"field": "body", "in": "body", "message": message}]
        return JSONResponse(error_body("validation_error", f"body: {message}", fields=fields), 422)
    error = _ERROR_BY_STATUS.get(exc.status_code, "http_error")
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 404:
        detail = "no such route"
    elif exc.status_code == 405:
        detail = f"this route allows {(exc.headers or {}).get('Allow', 'other methods')}"
    return JSONResponse(error_body(error, detail), exc.status_code, headers=exc.headers)


async def _rejected(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CommandRejected)
    extra = {"current_version": exc.version} if exc.reason == "version_mismatch" else {}
    return JSONResponse(error_body(exc.reason, exc.detail, **extra), status_code=exc.status_code)


async def _timeout(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OutcomeTimeout)
    return JSONResponse(
        error_body(
            "timeout",
            "the outcome is not known yet; retry with the same Idempotency-Key",
            command_id=exc.command_id,
        ),
        status_code=504,
    )


RETRY_AFTER_S = 2  # the broker watcher probes every 0.5 s; a restarted broker takes seconds


async def _unavailable(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(
        error_body("broker_unavailable", f"{exc}; retry with the same Idempotency-Key"),
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(error_body("internal_error", type(exc).__name__), status_code=500)


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(CommandRejected, _rejected)
    app.add_exception_handler(InvalidHeader, _invalid_header)
    app.add_exception_handler(OutcomeTimeout, _timeout)
    app.add_exception_handler(GatewayUnavailable, _unavailable)
    app.add_exception_handler(Exception, _unexpected)
