"""Transfer command routes: request a transfer; the transfer process in stream_processors/ moves the
money and the transfers view (GET /transfers/{id} on the query API) shows how it went."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, Field, StrictInt

from auth.http import requires
from auth.tokens import TRANSFERS_WRITE, Principal
from producers.api.submit import UNAVAILABLE, Body, Bus, IdempotencyKey, JsonRoute, errors, keyed_id, submit
from producers.domain.account.decider import MAX_AMOUNT
from producers.domain.transfer.commands import RequestTransfer

AGGREGATE = "transfer"
router = APIRouter(tags=["transfers"], route_class=JsonRoute)
AccountRef = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]


class TransferBody(Body):
    from_account_id: AccountRef
    to_account_id: AccountRef
    amount: StrictInt = Field(gt=0, le=MAX_AMOUNT, description="minor units")


class TransferAccepted(BaseModel):
    transfer_id: str
    position: str  # of TransferRequested; pass as ?after= to GET /transfers/{id}


@router.post(
    "/transfers",
    status_code=202,
    response_model=TransferAccepted,
    responses=errors(
        s409="refused: `same_account`, or a reused Idempotency-Key's transfer exists (`transfer_exists`)",
        s413="the request body is larger than COMMAND_API_MAX_BODY_BYTES",
        s415="the body is not JSON (Content-Type application/json)",
        s431="the request headers are larger than COMMAND_API_MAX_HEADER_BYTES",
        s422="invalid request, or an Idempotency-Key reused with another body",
        s503=UNAVAILABLE,
        s504="the outcome is not known in time; retry with the same key",
    ),
)
async def request_transfer(
    body: TransferBody,
    who: Annotated[Principal, Depends(requires(TRANSFERS_WRITE))],
    bus: Bus,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> TransferAccepted:
    """Request a transfer (202): it is recorded now and carried out by the transfer process, which
    debits the source, credits the target and completes it, or fails it with the reason
    (`insufficient_funds`, `account_closed`, `account_not_found`, `currency_mismatch` ...),
    refunding the source if the target refused the money. Follow it on GET /transfers/{id}. A
    customer's token may move money only out of its own accounts: another's fails `not_owner`."""
    transfer_id = keyed_id(f"transfer:{who.subject}", idempotency_key)
    command = RequestTransfer(body.from_account_id, body.to_account_id, body.amount)
    outcome = await submit(who, bus, response, AGGREGATE, transfer_id, command, idempotency_key)
    assert outcome.position is not None
    return TransferAccepted(transfer_id=transfer_id, position=outcome.position)
