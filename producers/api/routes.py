"""Account command routes: parse, build one command, submit it, map the outcome."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from producers.api.errors import CommandRejected
from producers.api.gateway import CommandBus, Outcome
from producers.domain.commands import Command, DepositMoney, OpenAccount
from producers.handler import CommandEnvelope

MAX_AMOUNT = 10**15  # minor units; keeps every sum far inside Avro's long
_KEYS = uuid.UUID("6f1d8a52-3c1e-4b8e-9a57-0d7a0e1f2b44")  # namespace for Idempotency-Key ids

router = APIRouter(tags=["accounts"])


def get_gateway(request: Request) -> CommandBus:
    gateway: CommandBus = request.app.state.gateway
    return gateway


Gateway = Annotated[CommandBus, Depends(get_gateway)]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200)]
AccountId = Annotated[str, Path(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OpenAccountBody(_Body):
    owner_id: str = Field(min_length=1, max_length=200)
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")
    overdraft_limit: StrictInt = Field(default=0, ge=0, le=MAX_AMOUNT)


class AmountBody(_Body):
    amount: StrictInt = Field(gt=0, le=MAX_AMOUNT, description="minor units")
    reference: str | None = Field(default=None, max_length=200)


class CommandAccepted(BaseModel):
    account_id: str
    version: int
    position: str


def _command_id(key: str | None) -> str:
    return str(uuid.uuid5(_KEYS, key)) if key else str(uuid.uuid4())


async def _run(
    gateway: CommandBus, response: Response, aggregate_id: str, command: Command, key: str | None
) -> CommandAccepted:
    command_id = _command_id(key)
    envelope = CommandEnvelope(
        command_id=command_id,
        aggregate_id=aggregate_id,
        correlation_id=command_id,
        issued_at=datetime.now(UTC),
    )
    outcome: Outcome = await gateway.submit(envelope, command)
    if not outcome.accepted:
        raise CommandRejected(outcome.reason or "rejected", outcome.detail or "", outcome.version)
    assert outcome.version is not None and outcome.position is not None
    response.headers["X-Position"] = outcome.position
    return CommandAccepted(account_id=aggregate_id, version=outcome.version, position=outcome.position)


@router.post("/accounts", status_code=201, response_model=CommandAccepted)
async def open_account(
    body: OpenAccountBody, gateway: Gateway, response: Response, idempotency_key: IdempotencyKey = None
) -> CommandAccepted:
    account_id = (
        str(uuid.uuid5(_KEYS, f"account:{idempotency_key}")) if idempotency_key else str(uuid.uuid4())
    )
    command = OpenAccount(body.owner_id, body.currency, body.overdraft_limit)
    return await _run(gateway, response, account_id, command, idempotency_key)


@router.post("/accounts/{account_id}/deposits", response_model=CommandAccepted)
async def deposit(
    account_id: AccountId,
    body: AmountBody,
    gateway: Gateway,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> CommandAccepted:
    command = DepositMoney(body.amount, body.reference, channel="http")
    return await _run(gateway, response, account_id, command, idempotency_key)
