"""Account command routes: parse, build one command, submit it, map the outcome."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from producers.api.errors import CommandRejected, ErrorBody, InvalidHeader
from producers.api.gateway import CommandBus, Outcome
from producers.domain.account import MAX_AMOUNT  # the domain's limit, so HTTP and Kafka agree
from producers.domain.commands import (
    ChangeOverdraftLimit,
    CloseAccount,
    Command,
    DepositMoney,
    OpenAccount,
    WithdrawMoney,
)
from producers.handler import CommandEnvelope

_KEYS = uuid.UUID("6f1d8a52-3c1e-4b8e-9a57-0d7a0e1f2b44")  # namespace for Idempotency-Key ids

router = APIRouter(tags=["accounts"])


async def get_bus(request: Request) -> CommandBus:
    bus: CommandBus = request.app.state.gateway
    return bus


Bus = Annotated[CommandBus, Depends(get_bus)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="Retry safely: the same key and body give the same answer and one effect.",
    ),
]
IfMatch = Annotated[
    str | None,
    Header(alias="If-Match", max_length=40, description='Expected version, e.g. "3"; 412 if stale.'),
]
AccountId = Annotated[str, Path(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OpenAccountBody(_Body):
    owner_id: str = Field(min_length=1, max_length=200)
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")
    overdraft_limit: StrictInt = Field(default=0, ge=0, le=MAX_AMOUNT)


class AmountBody(_Body):
    amount: StrictInt = Field(gt=0, le=MAX_AMOUNT, description="minor units")
    reference: str | None = Field(default=None, max_length=200)


class ChangeAccountBody(_Body):
    overdraft_limit: StrictInt = Field(ge=0, le=MAX_AMOUNT)


class CommandAccepted(BaseModel):
    account_id: str
    version: int
    position: str


_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in {
        404: "no such account",
        409: "a rule refused it (reason code in `error`)",
        412: "If-Match is stale; `current_version` says the version now",
        422: "invalid request, or an Idempotency-Key reused with another body",
        503: "Kafka is unavailable",
        504: "the outcome is not known in time; retry with the same key",
    }.items()
}


def _expected_version(if_match: str | None) -> int | None:
    if if_match is None:
        return None
    text = if_match.strip().removeprefix("W/").strip('"')
    if not text.isdigit():
        raise InvalidHeader("If-Match", 'must be a quoted version number, e.g. "3"')
    return int(text)


async def _run(
    bus: CommandBus,
    response: Response,
    aggregate_id: str,
    command: Command,
    key: str | None,
    if_match: str | None = None,
) -> CommandAccepted:
    # A key is scoped to its account: the same key on another account is another command.
    command_id = str(uuid.uuid5(_KEYS, f"{aggregate_id}:{key}")) if key else str(uuid.uuid4())
    envelope = CommandEnvelope(
        command_id=command_id,
        aggregate_id=aggregate_id,
        correlation_id=command_id,
        issued_at=datetime.now(UTC),
        expected_version=_expected_version(if_match),
    )
    outcome: Outcome = await bus.submit(envelope, command)
    if not outcome.accepted:
        raise CommandRejected(outcome.reason or "rejected", outcome.detail or "", outcome.version)
    assert outcome.version is not None and outcome.position is not None
    response.headers["X-Position"] = outcome.position
    response.headers["ETag"] = f'"{outcome.version}"'
    return CommandAccepted(account_id=aggregate_id, version=outcome.version, position=outcome.position)


@router.post("/accounts", status_code=201, response_model=CommandAccepted, responses=_ERRORS)
async def open_account(
    body: OpenAccountBody, bus: Bus, response: Response, idempotency_key: IdempotencyKey = None
) -> CommandAccepted:
    """Open an account; with an Idempotency-Key its id is derived from the key."""
    account_id = (
        str(uuid.uuid5(_KEYS, f"account:{idempotency_key}")) if idempotency_key else str(uuid.uuid4())
    )
    command = OpenAccount(body.owner_id, body.currency, body.overdraft_limit)
    return await _run(bus, response, account_id, command, idempotency_key)


@router.post("/accounts/{account_id}/deposits", response_model=CommandAccepted, responses=_ERRORS)
async def deposit(
    account_id: AccountId,
    body: AmountBody,
    bus: Bus,
    response: Response,
    idempotency_key: IdempotencyKey = None,
    if_match: IfMatch = None,
) -> CommandAccepted:
    command = DepositMoney(body.amount, body.reference, channel="http")
    return await _run(bus, response, account_id, command, idempotency_key, if_match)


@router.post("/accounts/{account_id}/withdrawals", response_model=CommandAccepted, responses=_ERRORS)
async def withdraw(
    account_id: AccountId,
    body: AmountBody,
    bus: Bus,
    response: Response,
    idempotency_key: IdempotencyKey = None,
    if_match: IfMatch = None,
) -> CommandAccepted:
    """409 `insufficient_funds` below minus the overdraft limit."""
    command = WithdrawMoney(body.amount, body.reference)
    return await _run(bus, response, account_id, command, idempotency_key, if_match)


@router.patch("/accounts/{account_id}", response_model=CommandAccepted, responses=_ERRORS)
async def change_account(
    account_id: AccountId,
    body: ChangeAccountBody,
    bus: Bus,
    response: Response,
    idempotency_key: IdempotencyKey = None,
    if_match: IfMatch = None,
) -> CommandAccepted:
    command = ChangeOverdraftLimit(body.overdraft_limit)
    return await _run(bus, response, account_id, command, idempotency_key, if_match)


@router.delete("/accounts/{account_id}", response_model=CommandAccepted, responses=_ERRORS)
async def close_account(
    account_id: AccountId,
    bus: Bus,
    response: Response,
    idempotency_key: IdempotencyKey = None,
    if_match: IfMatch = None,
) -> CommandAccepted:
    """Close at balance 0 only (409 `balance_not_zero`)."""
    return await _run(bus, response, account_id, CloseAccount(), idempotency_key, if_match)
