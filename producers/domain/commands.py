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


Command = OpenAccount | DepositMoney
