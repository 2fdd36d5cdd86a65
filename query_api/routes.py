"""Query routes: read one view, map absence to 404, versions to ETags."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from starlette.background import BackgroundTask

from auth.http import authorized
from auth.tokens import ACCOUNTS_READ, Forbidden, Principal
from query_api.errors import (
    AccountNotFound,
    ErrorBody,
    InvalidQuery,
    NotYetApplied,
    StatementNotFound,
    TooManyStreams,
    TransferNotFound,
)
from query_api.live import account_events
from query_api.notifications import StreamSlot
from stream_processors.store import ViewReads
from stream_processors.views import accounts, statements, transfers

router = APIRouter(tags=["accounts"])


# Plain parameters rather than dependencies: FastAPI's dependency solving was a quarter of the
# CPU of a read (py-spy), and these routes are the hot path.
After = Annotated[
    str | None,
    Query(
        pattern=r"^[0-9]{1,6}-[0-9]{1,19}$",
        description="read-your-writes: a command's position (X-Position); wait until the view has it",
    ),
]
WaitMs = Annotated[int, Query(ge=0, le=10_000, description="longest wait for `after`, in ms")]


async def applied(request: Request, after: str | None, wait_ms: int, view: str = accounts.NAME) -> ViewReads:
    """The view reader, once the view has applied `after` (a position) if one is given."""
    state = request.app.state
    if after is not None:
        partition, offset = (int(part) for part in after.split("-"))
        if not await state.notifications[view].wait(partition, offset, wait_ms / 1000):
            raise NotYetApplied(f"the view has not applied position {after} within {wait_ms} ms")
    reader: ViewReads = state.reader
    return reader


async def _own(reader: ViewReads, who: Principal, account_id: str) -> None:
    """A customer reads only its own accounts; another's is answered like a missing one (404), so
    a customer cannot learn which ids exist."""
    if who.is_customer:
        account = await accounts.account(reader, account_id)
        if account is None or account["owner_id"] != who.owner_id:
            raise AccountNotFound(account_id)


AccountId = Annotated[str, Path(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")]
OwnerId = Annotated[str, Path(min_length=1, max_length=200)]


class AccountView(BaseModel):
    account_id: str
    owner_id: str
    currency: str
    balance: int
    overdraft_limit: int
    status: str
    version: int
    opened_at: str
    updated_at: str


# The one declaration of GET /accounts/{id} (the OpenAPI's); a plain read (no query string) is
# answered by query_api/hot_path.py with the same account_response, before FastAPI's machinery.
@router.get(
    "/accounts/{account_id}",
    response_model=AccountView,
    responses={
        304: {"description": "Not modified"},
        404: {"model": ErrorBody},
        422: {"model": ErrorBody},
        503: {"model": ErrorBody},
    },
)
async def get_account(
    request: Request,
    account_id: AccountId,
    if_none_match: Annotated[str | None, Header()] = None,
    after: After = None,
    wait_ms: WaitMs = 2000,
) -> Response:
    who = await authorized(request, ACCOUNTS_READ)
    reader = await applied(request, after, wait_ms)
    return await account_response(reader, who, account_id, if_none_match)


async def account_response(
    reader: ViewReads, who: Principal, account_id: str, if_none_match: str | None
) -> Response:
    """GET /accounts/{id} once the caller and the view are known; query_api/hot_path.py serves the
    plain case with it too, outside FastAPI's request machinery."""
    account = await accounts.account(reader, account_id)
    if account is None or (who.is_customer and account["owner_id"] != who.owner_id):
        raise AccountNotFound(account_id)
    return _versioned(account, if_none_match)


class TransferView(BaseModel):
    transfer_id: str
    from_account_id: str
    to_account_id: str
    amount: int
    status: Literal["requested", "debited", "reversing", "completed", "failed"]
    reason: str | None = None  # a failure's code, e.g. insufficient_funds (also while reversing)
    detail: str | None = None
    version: int
    requested_at: str
    updated_at: str
    requested_by: str | None = None  # the subject who asked for it (transfers requested before auth: none)
    requested_by_owner: str | None = None  # the owner id it acted as, when a customer


TransferId = Annotated[str, Path(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")]


@router.get(
    "/transfers/{transfer_id}",
    response_model=TransferView,
    tags=["transfers"],
    responses={
        304: {"description": "Not modified"},
        404: {"model": ErrorBody},
        422: {"model": ErrorBody},
        503: {"model": ErrorBody},
    },
)
async def get_transfer(
    request: Request,
    transfer_id: TransferId,
    if_none_match: Annotated[str | None, Header()] = None,
    after: After = None,
    wait_ms: WaitMs = 2000,
) -> Response:
    """A transfer's accounts, amount and status; `after` is a position in the transfers' log. A
    customer sees the transfers it requested, and those to or from its accounts (404 otherwise)."""
    who = await authorized(request, ACCOUNTS_READ)
    reader = await applied(request, after, wait_ms, transfers.NAME)
    transfer = await transfers.transfer(reader, transfer_id)
    if transfer is None or not await _sees_transfer(reader, who, transfer):
        raise TransferNotFound(transfer_id)
    return _versioned(transfer, if_none_match)


async def _sees_transfer(reader: ViewReads, who: Principal, transfer: dict[str, Any]) -> bool:
    if not who.is_customer or transfer.get("requested_by_owner") == who.owner_id:
        return True
    for side in ("from_account_id", "to_account_id"):
        account = await accounts.account(reader, transfer[side])
        if account is not None and account["owner_id"] == who.owner_id:
            return True
    return False


def _versioned(row: dict[str, Any], if_none_match: str | None) -> Response:
    etag = f'"{row["version"]}"'
    if if_none_match is not None and etag in {t.strip() for t in if_none_match.split(",")}:
        return Response(status_code=304, headers={"ETag": etag})
    return Response(orjson.dumps(row), media_type="application/json", headers={"ETag": etag})


class TransactionItem(BaseModel):
    version: int
    type: str
    amount: int
    balance_after: int
    occurred_at: str
    reference: str | None = None
    transfer_id: str | None = None


class TransactionsPage(BaseModel):
    items: list[TransactionItem]
    next_cursor: str | None


class AccountsList(BaseModel):
    items: list[AccountView]


class DailyStats(BaseModel):
    date: str
    currency: str
    deposits: int
    withdrawals: int
    count: int


_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody},
    422: {"model": ErrorBody},
    503: {"model": ErrorBody},
}


@router.get(
    "/accounts/{account_id}/transactions",
    response_model=TransactionsPage,
    responses=_ERRORS,
)
async def get_transactions(
    request: Request,
    account_id: AccountId,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[
        str | None, Query(pattern=r"^v[0-9]{1,18}$", description="next_cursor of the last page")
    ] = None,
    after: After = None,
    wait_ms: WaitMs = 2000,
) -> Response:
    """Oldest first; a cursor names the last version seen, so pages stay stable under appends."""
    who = await authorized(request, ACCOUNTS_READ)
    reader = await applied(request, after, wait_ms)
    await _own(reader, who, account_id)
    seen = int(cursor[1:]) if cursor else 0
    items = await accounts.transactions(reader, account_id, seen, limit)
    if items is None:
        raise AccountNotFound(account_id)
    next_cursor = f"v{items[-1]['version']}" if len(items) == limit else None
    return Response(orjson.dumps({"items": items, "next_cursor": next_cursor}), media_type="application/json")


@router.get("/owners/{owner_id}/accounts", response_model=AccountsList, responses=_ERRORS)
async def get_owner_accounts(
    request: Request, owner_id: OwnerId, after: After = None, wait_ms: WaitMs = 2000
) -> Response:
    """An owner's accounts; a customer may list only its own (403 for another owner)."""
    who = await authorized(request, ACCOUNTS_READ)
    if who.is_customer and owner_id != who.owner_id:
        raise Forbidden(f"this token may list the accounts of owner {who.owner_id} only")
    reader = await applied(request, after, wait_ms)
    items = await accounts.owner_accounts(reader, owner_id)
    return Response(orjson.dumps({"items": items}), media_type="application/json")


@router.get("/stats/daily", response_model=DailyStats, responses=_ERRORS)
async def get_daily_stats(
    request: Request,
    date: Annotated[
        str,
        Query(
            pattern=r"^\d{4}-\d{2}-\d{2}$",
            description="YYYY-MM-DD (UTC)",
            json_schema_extra={"format": "date"},
        ),
    ],
    currency: Annotated[str, Query(pattern=r"^[A-Z]{3}$")],
    after: After = None,
    wait_ms: WaitMs = 2000,
) -> Response:
    """Totals of all accounts for a day: for staff and systems, not customers' tokens."""
    (await authorized(request, ACCOUNTS_READ)).require_staff("bank-wide statistics")
    reader = await applied(request, after, wait_ms)
    try:
        datetime.date.fromisoformat(date)
    except ValueError:
        raise InvalidQuery("date", f"{date} is not a calendar date") from None
    totals = await accounts.daily(reader, date, currency)
    return Response(
        orjson.dumps({"date": date, "currency": currency, **totals}), media_type="application/json"
    )


class Statement(BaseModel):
    account_id: str
    month: str  # YYYY-MM
    currency: str
    opening_balance: int
    deposits: int
    withdrawals: int
    transfers_in: int  # transfers' reversals included
    transfers_out: int
    closing_balance: int  # opening_balance + deposits - withdrawals + transfers_in - transfers_out


Month = Annotated[
    str, Path(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$", description="a calendar month, YYYY-MM (UTC)")
]


@router.get(
    "/accounts/{account_id}/statements/{month}",
    response_model=Statement,
    tags=["statements"],
    responses={
        404: {"model": ErrorBody, "description": "no such account, or the month is before it was opened"},
        422: {"model": ErrorBody},
        503: {"model": ErrorBody},
    },
)
async def get_statement(
    request: Request, account_id: AccountId, month: Month, after: After = None, wait_ms: WaitMs = 2000
) -> Response:
    """The account's statement of a month: opening balance, deposits, withdrawals, transfers in and
    out, closing balance (the current month's so far). `after` is a position of the accounts' log."""
    who = await authorized(request, ACCOUNTS_READ)
    reader = await applied(request, after, wait_ms, statements.NAME)
    await _own(reader, who, account_id)
    statement = await statements.statement(reader, account_id, month)
    if statement is None:
        raise StatementNotFound(account_id, month)
    return Response(orjson.dumps(statement), media_type="application/json")


_STREAM_DOC = """Server-sent events of the account's changes, live.

A new connection first gets `event: account` (the summary, `id` = its version), then one
`event: change` per later version (`{"version", "type", ...}`: deposit, withdrawal, transfer_in,
transfer_out, transfer_reversal with amount and balance_after; opened, overdraft_limit_changed,
closed), each with `id` = its version. Reconnecting with `Last-Event-ID: <version>` resumes with
the change after that version, with no gap and no repeat. A `: keepalive` comment is sent when
the stream is quiet."""


@router.get(
    "/accounts/{account_id}/stream",
    response_class=StreamingResponse,
    description=_STREAM_DOC,
    responses={
        200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}, "description": "the stream"},
        404: {"model": ErrorBody},
        422: {"model": ErrorBody},
        503: {"model": ErrorBody},
    },
)
async def stream_account(
    request: Request,
    account_id: AccountId,
    last_event_id: Annotated[
        str | None,
        Header(alias="Last-Event-ID", pattern=r"^[0-9]{1,18}$", description="the last version received"),
    ] = None,
    resume_after: Annotated[
        str | None,
        Query(
            alias="last_event_id",
            pattern=r"^[0-9]{1,18}$",
            description="the same as Last-Event-ID, for a new EventSource (which cannot set it)",
        ),
    ] = None,
    stream_token: Annotated[
        str | None,
        Query(max_length=2000, description="from GET /accounts/{id}/stream-token, instead of a bearer token"),
    ] = None,
) -> StreamingResponse:
    who = await authorized(request, ACCOUNTS_READ)
    state = request.app.state
    reader: ViewReads = state.reader
    feed = state.notifications[accounts.NAME]
    limit = state.settings.query_api_max_streams
    slot = feed.admit_stream(limit)
    if slot is None:
        raise TooManyStreams(f"this process already serves {limit} streams")
    try:
        account = await accounts.account(reader, account_id)
        if account is None or (who.is_customer and account["owner_id"] != who.owner_id):
            raise AccountNotFound(account_id)
    except BaseException:
        slot.release()
        raise
    events = account_events(
        reader,
        feed,
        account_id,
        summary=account if (last_event_id or resume_after) is None else None,
        after_version=int(last_event_id or resume_after or 0),
        keepalive_s=state.settings.query_api_stream_keepalive_s,
    )
    return StreamingResponse(
        _releasing(events, slot),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        background=BackgroundTask(slot.release),  # also when the client left before the first byte
    )


class StreamToken(BaseModel):
    token: str
    expires_in: int  # seconds
    stream_url: str  # where to open the EventSource (relative)


@router.get(
    "/accounts/{account_id}/stream-token",
    response_model=StreamToken,
    responses={404: {"model": ErrorBody}, 422: {"model": ErrorBody}, 503: {"model": ErrorBody}},
)
async def get_stream_token(request: Request, account_id: AccountId) -> StreamToken:
    """A short-lived token for this account's live stream, for browsers: `EventSource` cannot send
    an Authorization header, so open `stream_url` (which carries it as `stream_token=`). EventSource
    reconnects with it while it lives; after that, get a new one and resume with `last_event_id=`."""
    who = await authorized(request, ACCOUNTS_READ)
    account = await accounts.account(request.app.state.reader, account_id)
    if account is None or (who.is_customer and account["owner_id"] != who.owner_id):
        raise AccountNotFound(account_id)
    tokens = request.app.state.stream_tokens
    token = tokens.issue(who, account_id)
    return StreamToken(
        token=token, expires_in=tokens.ttl_s, stream_url=f"{tokens.path(account_id)}?stream_token={token}"
    )


async def _releasing(events: AsyncIterator[bytes], slot: StreamSlot) -> AsyncIterator[bytes]:
    try:
        async for chunk in events:
            yield chunk
    finally:
        slot.release()
