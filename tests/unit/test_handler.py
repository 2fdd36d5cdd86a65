from __future__ import annotations

from datetime import UTC, datetime

from producers.domain.commands import DepositMoney, OpenAccount
from producers.domain.events import AccountOpened, MoneyDeposited
from producers.handler import (
    IDEMPOTENCY_WINDOW,
    Accepted,
    AlreadyHandled,
    CommandEnvelope,
    Rejected,
    Stream,
    handle,
)


def envelope(command_id: str, expected: int | None = None) -> CommandEnvelope:
    return CommandEnvelope(command_id, "acc-1", command_id, datetime.now(UTC), expected)


def opened() -> Stream:
    stream = Stream()
    stream.apply(AccountOpened("alice", "EUR", 0), 1, "open-1", "3-10")
    return stream


def test_accepted_events_start_at_the_next_version() -> None:
    decision = handle(opened(), envelope("c2"), DepositMoney(5))
    assert isinstance(decision, Accepted)
    assert decision.first_version == 2


def test_same_command_id_answers_what_it_did_before() -> None:
    decision = handle(opened(), envelope("open-1"), OpenAccount("alice", "EUR"))
    assert isinstance(decision, AlreadyHandled)
    assert (decision.previous.version, decision.previous.position) == (1, "3-10")


def test_stale_expected_version_is_rejected_with_the_current_version() -> None:
    decision = handle(opened(), envelope("c2", expected=0), DepositMoney(5))
    assert decision == Rejected("version_mismatch", decision.detail, 1)  # type: ignore[union-attr]


def test_domain_errors_become_rejections_with_their_reason() -> None:
    decision = handle(Stream(), envelope("c1"), DepositMoney(5))
    assert isinstance(decision, Rejected)
    assert decision.reason == "account_not_found"


def test_the_idempotency_window_keeps_the_newest_ids() -> None:
    stream = opened()
    for version in range(2, IDEMPOTENCY_WINDOW + 3):
        stream.apply(MoneyDeposited(1), version, f"c{version}", "")
    assert len(stream.handled) == IDEMPOTENCY_WINDOW
    assert "open-1" not in stream.handled
    assert f"c{IDEMPOTENCY_WINDOW + 2}" in stream.handled
