"""What a view asks of its store: the writes a projection emits for one event, and the reads a
query makes. Keys are relative to a view generation (stream_processors/layout.py); the store
adapters (Redis: view_writer.py and query_api/views.py; the tests' in-memory fake) interpret them."""

from __future__ import annotations

from dataclasses import dataclass

# --- writes -------------------------------------------------------------------------------------


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
    daily_prefix: str  # + "<currency>": the day's totals (layout.daily_prefix)
    version: int
    delta: int
    entry: dict[str, str | int | None]  # the transaction item, without balance_after
    updated_at: str
    daily: bool  # counted in the daily totals (deposits and withdrawals are, transfers are not)


Op = HashSet | HashIncrement | SetAdd | SortedSetAdd | MoneyMoved


# --- reads (each gives one result, in order) -----------------------------------------------------


@dataclass(frozen=True)
class Hash:
    """-> dict[str, str], empty when there is no such row."""

    key: str


@dataclass(frozen=True)
class Exists:
    """-> bool"""

    key: str


@dataclass(frozen=True)
class Members:
    """-> set[str] of a set."""

    key: str


@dataclass(frozen=True)
class ScoreAfter:
    """-> list[str]: members of a sorted set with a score above `after`, lowest first, at most `limit`."""

    key: str
    after: int
    limit: int


Read = Hash | Exists | Members | ScoreAfter
