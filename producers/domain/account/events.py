"""Account events: facts in the past tense, immutable; amounts in minor units."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AccountOpened:
    owner_id: str
    currency: str
    overdraft_limit: int


@dataclass(frozen=True)
class MoneyDeposited:
    amount: int
    reference: str | None = None
    channel: str = "unspecified"


@dataclass(frozen=True)
class MoneyWithdrawn:
    amount: int
    reference: str | None = None


@dataclass(frozen=True)
class OverdraftLimitChanged:
    overdraft_limit: int


@dataclass(frozen=True)
class AccountClosed:
    pass


@dataclass(frozen=True)
class AccountDebited:
    transfer_id: str
    amount: int
    counterparty_account_id: str
    currency: str = ""  # the debited account's, so the credit can be checked against it (v2)


@dataclass(frozen=True)
class AccountCredited:
    transfer_id: str
    amount: int
    counterparty_account_id: str
    reversal: bool = False


Event = (
    AccountOpened
    | MoneyDeposited
    | MoneyWithdrawn
    | OverdraftLimitChanged
    | AccountClosed
    | AccountDebited
    | AccountCredited
)
