from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from stream_processors.ops import HashSet, MoneyMoved, SetAdd, SortedSetAdd
from stream_processors.views.accounts import project
from stream_processors.views.base import UnknownEventType

AT = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
STAMP = "2026-01-02T03:04:05.678Z"
BASE = {"aggregate_id": "acc-1", "occurred_at": AT}


def test_account_opened_sets_the_summary_and_the_owner_index() -> None:
    ops = project(
        "AccountOpened",
        {**BASE, "version": 1, "owner_id": "alice", "currency": "EUR", "overdraft_limit": 100},
    )
    assert ops == [
        HashSet("account:acc-1", {
            "account_id": "acc-1", "owner_id": "alice", "currency": "EUR", "balance": 0,
            "overdraft_limit": 100, "status": "open", "opened_at": STAMP, "version": 1, "updated_at": STAMP,
        }),
        SetAdd("owner:alice:accounts", "acc-1"),
        SortedSetAdd("account:acc-1:changes", 1, orjson.dumps({
            "version": 1, "type": "opened", "occurred_at": STAMP,
            "owner_id": "alice", "currency": "EUR", "overdraft_limit": 100,
        }).decode()),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("event_type", "payload", "delta", "kind"),
    [
        ("MoneyDeposited", {"amount": 1250, "reference": "r"}, 1250, "deposit"),
        ("MoneyWithdrawn", {"amount": 300, "reference": None}, -300, "withdrawal"),
        (
            "AccountDebited",
            {"amount": 5, "transfer_id": "t", "counterparty_account_id": "b"},
            -5,
            "transfer_out",
        ),
        (
            "AccountCredited",
            {"amount": 5, "transfer_id": "t", "counterparty_account_id": "b", "reversal": False},
            5,
            "transfer_in",
        ),
        (
            "AccountCredited",
            {"amount": 5, "transfer_id": "t", "counterparty_account_id": "b", "reversal": True},
            5,
            "transfer_reversal",
        ),
    ],
)
def test_money_events_move_the_balance_with_a_transaction_entry(
    event_type: str, payload: dict[str, object], delta: int, kind: str
) -> None:
    [op] = project(event_type, {**BASE, "version": 4, **payload})
    assert isinstance(op, MoneyMoved)
    assert (op.account_key, op.transactions_key, op.version, op.delta) == (
        "account:acc-1",
        "account:acc-1:transactions",
        4,
        delta,
    )
    assert op.entry["type"] == kind and op.entry["amount"] == abs(delta) and op.entry["version"] == 4
    assert (op.daily_prefix, op.updated_at) == ("daily:2026-01-02:", STAMP)
    assert op.daily == (kind in ("deposit", "withdrawal"))  # transfers are not in the daily totals


@pytest.mark.parametrize(
    ("event_type", "payload", "fields", "change"),
    [
        (
            "OverdraftLimitChanged",
            {"overdraft_limit": 70},
            {"overdraft_limit": 70},
            {"type": "overdraft_limit_changed", "overdraft_limit": 70},
        ),
        ("AccountClosed", {}, {"status": "closed"}, {"type": "closed"}),
    ],
)
def test_account_changes_update_the_summary_and_the_change_log(
    event_type: str, payload: dict[str, object], fields: dict[str, object], change: dict[str, object]
) -> None:
    summary, logged = project(event_type, {**BASE, "version": 4, **payload})
    assert summary == HashSet("account:acc-1", {**fields, "version": 4, "updated_at": STAMP})  # type: ignore[dict-item]
    assert isinstance(logged, SortedSetAdd)
    assert (logged.key, logged.score) == ("account:acc-1:changes", 4)
    assert orjson.loads(logged.member) == {"version": 4, "occurred_at": STAMP, **change}


def test_an_event_without_a_rule_is_an_error_not_a_silent_skip() -> None:
    with pytest.raises(UnknownEventType):
        project("TransferRequested", {**BASE, "version": 3})
