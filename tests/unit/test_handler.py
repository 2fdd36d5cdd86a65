from __future__ import annotations

from datetime import UTC, datetime

from producers.aggregates.account import AGGREGATE
from producers.domain.account.commands import DepositMoney, WithdrawMoney
from producers.domain.account.events import AccountOpened
from producers.engine.handler import (
    Accepted,
    AlreadyHandled,
    CommandEnvelope,
    Outcome,
    Rejected,
    Stream,
    handle,
    request_hash,
)


def envelope(command_id: str, expected: int | None = None) -> CommandEnvelope:
    return CommandEnvelope(command_id, "acc-1", command_id, datetime.now(UTC), expected)


def opened() -> Stream:
    stream = Stream()
    stream.apply(AGGREGATE, AccountOpened("alice", "EUR", 0), 1)
    return stream


def run(stream: Stream, env: CommandEnvelope, command: object, previous: Outcome | None = None):  # type: ignore[no-untyped-def]
    return handle(AGGREGATE, stream, env, command, previous, request_hash(env, command))  # type: ignore[arg-type]


def test_accepted_events_start_at_the_next_version() -> None:
    decision = run(opened(), envelope("c2"), DepositMoney(5))
    assert isinstance(decision, Accepted)
    assert decision.first_version == 2


def test_same_command_id_and_body_answers_what_it_did_before() -> None:
    env, command = envelope("c2"), DepositMoney(5)
    before = Outcome(True, 2, "3-10", None, None, request_hash(env, command))
    assert run(opened(), env, command, before) == AlreadyHandled(before)


def test_a_remembered_rejection_is_replayed_too() -> None:
    env, command = envelope("c2"), WithdrawMoney(5)
    before = Outcome(False, 1, None, "insufficient_funds", "no", request_hash(env, command))
    assert run(opened(), env, command, before) == AlreadyHandled(before)


def test_same_command_id_with_another_body_is_refused_and_not_remembered() -> None:
    env = envelope("c2")
    before = Outcome(True, 2, "3-10", None, None, request_hash(env, DepositMoney(5)))
    decision = run(opened(), env, DepositMoney(6), before)
    assert isinstance(decision, Rejected)
    assert (decision.reason, decision.remember) == ("idempotency_key_reused", False)


def test_the_request_hash_depends_on_type_payload_and_target() -> None:
    env = envelope("c")
    assert request_hash(env, DepositMoney(5)) == request_hash(env, DepositMoney(5))
    assert request_hash(env, DepositMoney(5)) != request_hash(env, WithdrawMoney(5))
    assert request_hash(env, DepositMoney(5)) != request_hash(envelope("c", expected=1), DepositMoney(5))


def test_stale_expected_version_is_rejected_with_the_current_version() -> None:
    decision = run(opened(), envelope("c2", expected=0), DepositMoney(5))
    assert isinstance(decision, Rejected)
    assert (decision.reason, decision.version) == ("version_mismatch", 1)
    assert isinstance(run(opened(), envelope("c3", expected=1), DepositMoney(5)), Accepted)


def test_domain_errors_become_rejections_with_their_reason() -> None:
    decision = run(Stream(), envelope("c1"), DepositMoney(5))
    assert isinstance(decision, Rejected)
    assert decision.reason == "account_not_found"
