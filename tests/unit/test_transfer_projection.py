from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stream_processors.ops import HashSet
from stream_processors.views.base import UnknownEventType
from stream_processors.views.transfers import project

AT = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
STAMP = "2026-01-02T03:04:05.678Z"
BASE = {"aggregate_id": "t-1", "occurred_at": AT}


def test_a_transfer_is_requested_then_completed_or_failed() -> None:
    requested = project(
        "TransferRequested", {**BASE, "version": 1, "from_account_id": "a", "to_account_id": "b", "amount": 5}
    )
    assert requested == [
        HashSet("transfer:t-1", {
            "transfer_id": "t-1", "from_account_id": "a", "to_account_id": "b", "amount": 5,
            "status": "requested", "requested_at": STAMP, "version": 1, "updated_at": STAMP,
        })
    ]  # fmt: skip
    assert project("TransferCompleted", {**BASE, "version": 2}) == [
        HashSet("transfer:t-1", {"status": "completed", "version": 2, "updated_at": STAMP})
    ]
    failed = {"reason": "insufficient_funds", "detail": "a has 3"}
    assert project("TransferFailed", {**BASE, "version": 2, **failed}) == [
        HashSet("transfer:t-1", {"status": "failed", **failed, "version": 2, "updated_at": STAMP})
    ]


def test_a_debited_transfer_is_reversed_when_the_target_refuses() -> None:
    assert project("TransferDebited", {**BASE, "version": 2}) == [
        HashSet("transfer:t-1", {"status": "debited", "version": 2, "updated_at": STAMP})
    ]
    refused = {"reason": "account_closed", "detail": "b is closed"}
    reversing = {**BASE, "version": 3, "from_account_id": "a", "to_account_id": "b", "amount": 5, **refused}
    assert project("TransferReversing", reversing) == [
        HashSet("transfer:t-1", {"status": "reversing", **refused, "version": 3, "updated_at": STAMP})
    ]


def test_an_account_event_is_not_a_transfer_event() -> None:
    with pytest.raises(UnknownEventType):
        project("MoneyDeposited", {**BASE, "version": 1})
