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


Event = AccountOpened | MoneyDeposited
