"""decide/evolve tables for the transfer aggregate: requested -> debited -> completed, or failed
(directly, or through reversing when the source was debited)."""

from __future__ import annotations

from functools import reduce

import pytest

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
from producers.domain.transfer.decider import Transfer, decide, evolve
from producers.domain.transfer.events import (
    TransferCompleted,
    TransferDebited,
    TransferFailed,
    TransferRequested,
    TransferReversing,
)


def transfer(status: str = "requested", reason: str = "", detail: str = "") -> Transfer:
    return Transfer("a", "b", 50, status, reason, detail)  # type: ignore[arg-type]


ACCEPTED = [
    (None, RequestTransfer("a", "b", 50), [TransferRequested("a", "b", 50)]),
    (None, RequestTransfer("a", "b", MAX_AMOUNT), [TransferRequested("a", "b", MAX_AMOUNT)]),
    (transfer(), MarkTransferDebited(), [TransferDebited()]),
    (transfer("debited"), CompleteTransfer(), [TransferCompleted()]),
    (transfer(), FailTransfer("insufficient_funds", "d"), [TransferFailed("insufficient_funds", "d")]),
    # Debited, then refused by the target: the source is refunded before the transfer fails.
    (
        transfer("debited"),
        FailTransfer("account_closed", "d"),
        [TransferReversing("a", "b", 50, "account_closed", "d")],
    ),
    (transfer("reversing", "account_closed", "d"), RecordRefund(), [TransferFailed("account_closed", "d")]),
]

REJECTED = [
    (transfer(), RequestTransfer("a", "b", 50), errors.TransferExists),
    (None, RequestTransfer("a", "a", 50), errors.SameAccount),
    (None, RequestTransfer("a", "b", 0), errors.InvalidAmount),
    (None, RequestTransfer("a", "b", MAX_AMOUNT + 1), errors.InvalidAmount),
    (None, MarkTransferDebited(), errors.TransferNotFound),
    (transfer(), CompleteTransfer(), errors.TransferFinished),  # not debited yet
    (transfer("completed"), FailTransfer("x", "d"), errors.TransferFinished),
    (transfer("failed"), MarkTransferDebited(), errors.TransferFinished),
    (transfer("reversing"), CompleteTransfer(), errors.TransferFinished),
    (transfer("debited"), RecordRefund(), errors.TransferFinished),
]


@pytest.mark.parametrize(("state", "command", "events"), ACCEPTED)
def test_accepted(state: Transfer | None, command: Command, events: list[object]) -> None:
    assert decide(state, command) == events


@pytest.mark.parametrize(("state", "command", "error"), REJECTED)
def test_rejected(state: Transfer | None, command: Command, error: type[Exception]) -> None:
    with pytest.raises(error):
        decide(state, command)


def test_a_refused_credit_ends_failed_with_the_targets_reason() -> None:
    history = [
        TransferRequested("a", "b", 50),
        TransferDebited(),
        TransferReversing("a", "b", 50, "currency_mismatch", "EUR vs CHF"),
        TransferFailed("currency_mismatch", "EUR vs CHF"),
    ]
    state = reduce(evolve, history, None)  # type: ignore[arg-type]
    assert state == Transfer("a", "b", 50, "failed", "currency_mismatch", "EUR vs CHF")
