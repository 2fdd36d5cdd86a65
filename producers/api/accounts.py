"""Account command routes: parse, build one command, submit it, map the outcome."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response
from pydantic import AfterValidator, BaseModel, Field, StrictInt

from auth.http import requires
from auth.tokens import ACCOUNTS_WRITE, Principal
from producers.api.submit import (
    UNAVAILABLE,
    Body,
    Bus,
    IdempotencyKey,
    IfMatch,
    JsonRoute,
    errors,
    keyed_id,
    submit,
)
from producers.domain.account.commands import (
    ChangeOverdraftLimit,
    CloseAccount,
    Command,
    DepositMoney,
    OpenAccount,
    WithdrawMoney,
)
from producers.domain.account.decider import MAX_AMOUNT  # the domain's limit, so HTTP and Kafka agree
from producers.domain.account.text import (
    CURRENCIES,
    MAX_REFERENCE,
    OWNER_ID_PATTERN,
    currency_problem,
    owner_id_problem,
    reference_problem,
)

AGGREGATE = "account"
router = APIRouter(tags=["accounts"], route_class=JsonRoute)
# Customers (tokens with an owner id) act only on their own accounts: the account's writer decides
# that (reason not_owner, 403), since only it knows the owner for sure.
Writer = Annotated[Principal, Depends(requires(ACCOUNTS_WRITE))]
AccountId = Annotated[str, Path(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]


def _checked(problem: Callable[[str], str | None]) -> AfterValidator:
    """The domain's own rule as a field validator: 422 naming the field, before Kafka."""

    def check(value: str) -> str:
        if reason := problem(value):
            raise ValueError(reason)
        return value

    return AfterValidator(check)


OwnerId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=200,
        pattern=OWNER_ID_PATTERN,
        description="an ASCII letter or digit, then letters, digits and . _ @ - (at most 200)",
    ),
    _checked(owner_id_problem),
]
Currency = Annotated[
    str,
    Field(
        pattern=r"^[A-Z]{3}$",
        description="an ISO 4217 code, e.g. EUR",
        json_schema_extra={"enum": sorted(CURRENCIES)},  # the list, for clients and fuzzers alike
    ),
    _checked(currency_problem),
]
Reference = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_REFERENCE,
        description="printable text without control or bidi-override characters, no leading or "
        "trailing white space",
    ),
    _checked(reference_problem),
]


class OpenAccountBody(Body):
    owner_id: OwnerId
    currency: Currency
    overdraft_limit: StrictInt = Field(default=0, ge=0, le=MAX_AMOUNT)


class AmountBody(Body):
    amount: StrictInt = Field(gt=0, le=MAX_AMOUNT, description="minor units")
    reference: Reference | None = None


class ChangeAccountBody(Body):
    overdraft_limit: StrictInt = Field(ge=0, le=MAX_AMOUNT)


class CommandAccepted(BaseModel):
    account_id: str
    version: int
    position: str


_NO_BODY_ERRORS = errors(
    s403="the token may not do this: scope, or (`not_owner`, `staff_only`) not its account",
    s404="no such account",
    s409="a rule refused it (reason code in `error`)",
    s412="If-Match is stale; `current_version` says the version now",
    s422="invalid request, or an Idempotency-Key reused with another body",
    s503=UNAVAILABLE,
    s413="the request body is larger than COMMAND_API_MAX_BODY_BYTES",
    s431="the request headers are larger than COMMAND_API_MAX_HEADER_BYTES",
    s504="the outcome is not known in time; retry with the same key",
)
_ERRORS = {**_NO_BODY_ERRORS, **errors(s415="the body is not JSON (Content-Type application/json)")}


async def _run(
    who: Principal,
    bus: Bus,
    response: Response,
    account_id: str,
    command: Command,
    key: str | None,
    if_match: str | None = None,
) -> CommandAccepted:
    outcome = await submit(who, bus, response, AGGREGATE, account_id, command, key, if_match)
    assert outcome.version is not None and outcome.position is not None
    return CommandAccepted(account_id=account_id, version=outcome.version, position=outcome.position)


@router.post("/accounts", status_code=201, response_model=CommandAccepted, responses=_ERRORS)
async def open_account(
    body: OpenAccountBody,
    who: Writer,
    bus: Bus,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> CommandAccepted:
    """Open an account; with an Idempotency-Key its id is derived from the key (and the caller). A
    customer's token opens accounts only for its own owner id, without overdraft."""
    account_id = keyed_id(f"account:{who.subject}", idempotency_key)
    command = OpenAccount(body.owner_id, body.currency, body.overdraft_limit)
    return await _run(who, bus, response, account_id, command, idempotency_key)


@router.post("/accounts/{account_id}/deposits", response_model=CommandAccepted, responses=_ERRORS)
async def deposit(
    account_id: AccountId,
    body: AmountBody,
    who: Writer,
    bus: Bus,
    response: Response,
    idempotency_key: IdempotencyKey = None,
    if_match: IfMatch = None,
) -> CommandAccepted:
    command = DepositMoney(body.amount, body.reference, channel="http")
    return await _run(who, bus, response, account_id, command, idempotency_key, if_match)


@router.post("/accounts/{account_id}/withdrawals", response_model=CommandAccepted, responses=_ERRORS)
async def withdraw(
    account_id: AccountId,
    body: AmountBody,
    who: Writer,
    bus: Bus,
    response: Response,
    idempotency_key: IdempotencyKey = None,
    if_match: IfMatch = None,
) -> CommandAccepted:
    """409 `insufficient_funds` below minus the overdraft limit."""
    command = WithdrawMoney(body.amount, body.reference)
    return await _run(who, bus, response, account_id, command, idempotency_key, if_match)


@router.patch("/accounts/{account_id}", response_model=CommandAccepted, responses=_ERRORS)
async def change_account(
    account_id: AccountId,
    body: ChangeAccountBody,
    who: Writer,
    bus: Bus,
    response: Response,
    idempotency_key: IdempotencyKey = None,
    if_match: IfMatch = None,
) -> CommandAccepted:
    command = ChangeOverdraftLimit(body.overdraft_limit)
    return await _run(who, bus, response, account_id, command, idempotency_key, if_match)


@router.delete("/accounts/{account_id}", response_model=CommandAccepted, responses=_NO_BODY_ERRORS)
async def close_account(
    account_id: AccountId,
    who: Writer,
    bus: Bus,
    response: Response,
    idempotency_key: IdempotencyKey = None,
    if_match: IfMatch = None,
) -> CommandAccepted:
    """Close at balance 0 only (409 `balance_not_zero`)."""
    return await _run(who, bus, response, account_id, CloseAccount(), idempotency_key, if_match)
