"""Account commands: imperative, immutable requests that the domain may accept or reject."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OpenAccount:
    owner_id: str
    currency: str
    overdraft_limit: int = 0


@dataclass(frozen=True)
class DepositMoney:
    amount: int
    reference: str | None = None
    channel: str = "unspecified"


@dataclass(frozen=True)
class WithdrawMoney:
    amount: int
    reference: str | None = None


@dataclass(frozen=True)
class ChangeOverdraftLimit:
    overdraft_limit: int


@dataclass(frozen=True)
class CloseAccount:
    pass


@dataclass(frozen=True)
class DebitAccount:
    """Sent by the transfer process: take a transfer's money out of its source account."""

    transfer_id: str
    amount: int
    counterparty_account_id: str


@dataclass(frozen=True)
class CreditAccount:
    """Sent by the transfer process: pay a transfer's money in (or back, when reversal)."""

    transfer_id: str
    amount: int
    counterparty_account_id: str
    reversal: bool = False
    currency: str | None = None  # the money's currency; refused if the account's differs (v2)


Command = (
    OpenAccount
    | DepositMoney
    | WithdrawMoney
    | ChangeOverdraftLimit
    | CloseAccount
    | DebitAccount
    | CreditAccount
)
