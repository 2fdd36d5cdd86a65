"""Transfer commands: a client requests a transfer; the transfer process reports its steps."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RequestTransfer:
    from_account_id: str
    to_account_id: str
    amount: int


@dataclass(frozen=True)
class MarkTransferDebited:
    """The money left the source account."""


@dataclass(frozen=True)
class CompleteTransfer:
    """The money arrived on the target account."""


@dataclass(frozen=True)
class FailTransfer:
    """A step was refused (or timed out): fail, refunding the source first if it was debited."""

    reason: str
    detail: str


@dataclass(frozen=True)
class RecordRefund:
    """The money of a failing transfer is back on the source account."""


Command = RequestTransfer | MarkTransferDebited | CompleteTransfer | FailTransfer | RecordRefund
