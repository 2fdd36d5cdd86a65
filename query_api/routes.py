"""Account query routes: read one view, map absence to 404, versions to ETags."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Header, Path, Request, Response
from pydantic import BaseModel

from query_api.views import ViewReader

router = APIRouter(tags=["accounts"])


async def get_reader(request: Request) -> ViewReader:
    reader: ViewReader = request.app.state.reader
    return reader


Reader = Annotated[ViewReader, Depends(get_reader)]
AccountId = Annotated[str, Path(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")]


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


class ErrorBody(BaseModel):
    error: str
    detail: str


class AccountNotFound(Exception):
    pass


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
    account_id: AccountId, reader: Reader, if_none_match: Annotated[str | None, Header()] = None
) -> Response:
    account = await reader.account(account_id)
    if account is None:
        raise AccountNotFound(account_id)
    etag = f'"{account["version"]}"'
    if if_none_match is not None and etag in {t.strip() for t in if_none_match.split(",")}:
        return Response(status_code=304, headers={"ETag": etag})
    return Response(orjson.dumps(account), media_type="application/json", headers={"ETag": etag})
