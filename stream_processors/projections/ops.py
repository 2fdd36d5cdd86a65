"""The Redis operations a projection may emit; keys are relative to a view generation."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HashSet:
    key: str
    fields: dict[str, str | int]


@dataclass(frozen=True)
class HashIncrement:
    key: str
    field: str
    amount: int


@dataclass(frozen=True)
class SetAdd:
    key: str
    member: str


@dataclass(frozen=True)
class SortedSetAdd:
    key: str
    score: int
    member: str


@dataclass(frozen=True)
class MoneyMoved:
    """Money in (+) or out (-) of an account, applied atomically by one script: the summary's
    balance and version, a transaction entry with the balance after it, and the daily totals of
    the account's currency (which only the summary knows)."""

    account_key: str  # the summary hash
    transactions_key: str  # sorted set, score = version
    daily_prefix: str  # + "<date>:<currency>"
    version: int
    delta: int
    entry: dict[str, str | int | None]  # the transaction item, without balance_after
    day: str  # YYYY-MM-DD of the event
    updated_at: str


Op = HashSet | HashIncrement | SetAdd | SortedSetAdd | MoneyMoved
