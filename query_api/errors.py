"""The error body every failure carries, and the exceptions routes raise to produce it."""

from __future__ import annotations

from fastapi.responses import JSONResponse
from pydantic import BaseModel


class ErrorBody(BaseModel):
    error: str
    detail: str


def error_response(status: int, error: str, detail: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


class AccountNotFound(Exception):
    def __init__(self, account_id: str) -> None:
        super().__init__(f"no account {account_id}")


class TransferNotFound(Exception):
    def __init__(self, transfer_id: str) -> None:
        super().__init__(f"no transfer {transfer_id}")


class StatementNotFound(Exception):
    def __init__(self, account_id: str, month: str) -> None:
        super().__init__(
            f"no statement of account {account_id} for {month}: no such account, or not open yet"
        )


class InvalidQuery(Exception):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")


class NotYetApplied(Exception):
    """The view has not reached the requested position within the wait."""


class TooManyStreams(Exception):
    """The process already serves its maximum number of live streams."""
