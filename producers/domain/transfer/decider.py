"""The transfer aggregate as decide/evolve: requested -> debited -> completed, or -> failed
(directly, or through reversing when the source was debited and must be refunded first)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from producers.domain.account.decider import MAX_AMOUNT
from producers.domain.transfer import errors
from producers.domain.transfer.commands import (
    Command,
    CompleteTransfer,
    FailTransfer,
    MarkTransferDebited,
    RecordRefund,
    RequestTransfer,
)
from producers.domain.transfer.events import (
    Event,
    TransferCompleted,
    TransferDebited,
    TransferFailed,
    TransferRequested,
    TransferReversing,
)

Status = Literal["requested", "debited", "reversing", "completed", "failed"]


@dataclass(frozen=True)
class Transfer:
    from_account_id: str
    to_account_id: str
    amount: int
    status: Status = "requested"
    reason: str = ""
    detail: str = ""


def _in(state: Transfer | None, *statuses: Status) -> Transfer:
    if state is None:
        raise errors.TransferNotFound("no such transfer")
    if state.status not in statuses:
        raise errors.TransferFinished(f"the transfer is {state.status}, not {' or '.join(statuses)}")
    return state


def decide(state: Transfer | None, command: Command) -> list[Event]:
    """The events a command causes, or a DomainError naming the broken rule."""
    match command:
        case RequestTransfer(source, target, amount):
            if state is not None:
                raise errors.TransferExists("the transfer exists")
            if source == target:
                raise errors.SameAccount("a transfer needs two different accounts")
            if not 0 < amount <= MAX_AMOUNT:
                raise errors.InvalidAmount(f"amount must be > 0 and <= {MAX_AMOUNT}, not {amount}")
            return [TransferRequested(source, target, amount)]
        case MarkTransferDebited():
            _in(state, "requested")
            return [TransferDebited()]
        case CompleteTransfer():
            _in(state, "debited")
            return [TransferCompleted()]
        case FailTransfer(reason, detail):
            transfer = _in(state, "requested", "debited")
            if transfer.status == "requested":  # no money moved
                return [TransferFailed(reason, detail)]
            return [
                TransferReversing(
                    transfer.from_account_id, transfer.to_account_id, transfer.amount, reason, detail
                )
            ]
        case RecordRefund():
            transfer = _in(state, "reversing")
            return [TransferFailed(transfer.reason, transfer.detail)]
    raise TypeError(f"not a command: {command!r}")


def evolve(state: Transfer | None, event: Event) -> Transfer:
    if isinstance(event, TransferRequested):
        return Transfer(event.from_account_id, event.to_account_id, event.amount)
    assert state is not None, f"{type(event).__name__} before TransferRequested"
    match event:
        case TransferDebited():
            return replace(state, status="debited")
        case TransferCompleted():
            return replace(state, status="completed")
        case TransferReversing(_, _, _, reason, detail):
            return replace(state, status="reversing", reason=reason, detail=detail)
        case TransferFailed(reason, detail):
            return replace(state, status="failed", reason=reason, detail=detail)
    raise TypeError(f"not an event: {event!r}")
