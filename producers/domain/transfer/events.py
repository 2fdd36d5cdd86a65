"""Transfer events: the steps of a transfer, in the past tense."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TransferRequested:
    from_account_id: str
    to_account_id: str
    amount: int


@dataclass(frozen=True)
class TransferDebited:
    pass


@dataclass(frozen=True)
class TransferCompleted:
    pass


@dataclass(frozen=True)
class TransferReversing:
    """The target refused the money after the source was debited: the source gets it back."""

    from_account_id: str
    to_account_id: str
    amount: int
    reason: str
    detail: str


@dataclass(frozen=True)
class TransferFailed:
    reason: str
    detail: str


Event = TransferRequested | TransferDebited | TransferCompleted | TransferReversing | TransferFailed
