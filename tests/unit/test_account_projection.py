from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stream_processors.projections.accounts import UnknownEventType, project
from stream_processors.projections.ops import HashIncrement, HashSet

AT = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
BASE = {"aggregate_id": "acc-1", "occurred_at": AT}


def test_account_opened_sets_the_whole_summary() -> None:
    [op] = project(
        "AccountOpened",
        {**BASE, "version": 1, "owner_id": "alice", "currency": "EUR", "overdraft_limit": 100},
    )
    assert op == HashSet(
        "account:acc-1",
        {
            "account_id": "acc-1",
            "owner_id": "alice",
            "currency": "EUR",
            "balance": 0,
            "overdraft_limit": 100,
            "status": "open",
            "opened_at": "2026-01-02T03:04:05.678Z",
            "version": 1,
            "updated_at": "2026-01-02T03:04:05.678Z",
        },
    )


def test_money_deposited_increments_the_balance_and_stamps_the_version() -> None:
    ops = project("MoneyDeposited", {**BASE, "version": 2, "amount": 1250, "reference": None})
    assert ops == [
        HashIncrement("account:acc-1", "balance", 1250),
        HashSet("account:acc-1", {"version": 2, "updated_at": "2026-01-02T03:04:05.678Z"}),
    ]


def test_an_event_without_a_rule_is_an_error_not_a_silent_skip() -> None:
    with pytest.raises(UnknownEventType):
        project("SomethingElse", {**BASE, "version": 3})


@pytest.mark.parametrize(
    ("event_type", "payload", "first"),
    [
        (
            "MoneyWithdrawn",
            {"amount": 300, "reference": None},
            HashIncrement("account:acc-1", "balance", -300),
        ),
        (
            "AccountDebited",
            {"amount": 5, "transfer_id": "t", "counterparty_account_id": "b"},
            HashIncrement("account:acc-1", "balance", -5),
        ),
        (
            "AccountCredited",
            {"amount": 5, "transfer_id": "t", "counterparty_account_id": "b", "reversal": False},
            HashIncrement("account:acc-1", "balance", 5),
        ),
        (
            "OverdraftLimitChanged",
            {"overdraft_limit": 70},
            HashSet(
                "account:acc-1",
                {"overdraft_limit": 70, "version": 4, "updated_at": "2026-01-02T03:04:05.678Z"},
            ),
        ),
        (
            "AccountClosed",
            {},
            HashSet(
                "account:acc-1", {"status": "closed", "version": 4, "updated_at": "2026-01-02T03:04:05.678Z"}
            ),
        ),
    ],
)
def test_every_account_event_has_a_rule(event_type: str, payload: dict[str, object], first: object) -> None:
    assert project(event_type, {**BASE, "version": 4, **payload})[0] == first
