"""The transfer process without Kafka: its rules as tables (fact or timeout in -> commands out,
ids derived from transfer and step), and its transactional loop with a fake consumer and producer."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from schemas.codec import SingleObjectCodec
from schemas.headers import COMMAND_ID_HEADER
from schemas.keys import partition_for
from stream_processors.transfer_process_engine import Config, TransferProcess
from stream_processors.transfer_process_rules import (
    NAMESPACE,
    Credited,
    Debited,
    GaveUp,
    Policy,
    Reaction,
    Recorded,
    Refused,
    Requested,
    Reversing,
    Saga,
    account_fact,
    account_step,
    command_id,
    pending,
    react,
    timeout,
    transfer_fact,
)

T, SRC, DST = "t-1", "acc-src", "acc-dst"
POLICY = Policy(timeout_s=10, max_retries=2)
AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def steps(reaction: Reaction) -> list[tuple[str, str, str]]:
    """(record name, aggregate id, step) of each command, in order."""
    return [(s.name, s.aggregate_id, s.step) for s in reaction.sends]


def run(*facts: Any, now: float = 0.0) -> tuple[Saga | None, list[Reaction]]:
    saga: Saga | None = None
    reactions = []
    for fact in facts:
        reaction = react(saga, fact, now, POLICY)
        reactions.append(reaction)
        saga = reaction.saga
    return saga, reactions


REQUESTED = Requested(T, SRC, DST, 500, 1_000)
REVERSING = [REQUESTED, Debited(T, "X"), Refused(T, "credit", "r", ""), Reversing(T, "r", "")]


# -- ids ---------------------------------------------------------------------------------------


def test_command_ids_derive_from_transfer_and_step() -> None:
    assert command_id(T, "debit") == str(uuid.uuid5(NAMESPACE, f"{T}:debit"))
    assert command_id(T, "debit") == command_id(T, "debit")
    ids = {command_id(T, s) for s in ("debit", "mark-debited", "credit", "complete", "fail", "refund")}
    assert len(ids) == 6 and command_id("t-2", "debit") not in ids
    assert account_step(T, command_id(T, "refund")) == "refund"
    assert account_step(T, command_id(T, "complete")) is None  # a transfer step, not an account one
    assert account_step(T, str(uuid.uuid4())) is None


# -- the happy path and the refusals -----------------------------------------------------------


def test_requested_debited_credited_completed() -> None:
    saga, (requested, debited, marked, credited, completed) = run(
        REQUESTED,
        Debited(T, "EUR"),
        Recorded(T, "debited", 1_100),
        Credited(T, reversal=False),
        Recorded(T, "completed", 1_200),
    )
    (debit,) = requested.sends
    assert (debit.aggregate, debit.aggregate_id, debit.name) == ("account", SRC, "DebitAccount")
    assert dict(debit.payload) == {"transfer_id": T, "amount": 500, "counterparty_account_id": DST}
    assert debit.command_id == command_id(T, "debit")
    # One reaction (one transaction): the transfer is marked debited and the target credited in
    # the source's currency.
    assert steps(debited) == [("MarkTransferDebited", T, "mark-debited"), ("CreditAccount", DST, "credit")]
    assert dict(debited.sends[1].payload) == {
        "transfer_id": T,
        "amount": 500,
        "counterparty_account_id": SRC,
        "reversal": False,
        "currency": "EUR",
    }
    assert marked.sends == ()
    assert steps(credited) == [("CompleteTransfer", T, "complete")]
    assert completed.saga is None and completed.notes == ("completed",)  # settled: forgotten
    assert saga is None


def test_a_refused_debit_fails_the_transfer_with_its_reason() -> None:
    saga, (_, refused, failed) = run(
        REQUESTED,
        Refused(T, "debit", "insufficient_funds", "balance 3 minus 500"),
        Recorded(T, "failed", 1_100, "insufficient_funds"),
    )
    assert steps(refused) == [("FailTransfer", T, "fail")]
    assert dict(refused.sends[0].payload) == {"reason": "insufficient_funds", "detail": "balance 3 minus 500"}
    assert failed.notes == ("failed:insufficient_funds",) and saga is None


def test_a_refused_credit_fails_then_refunds_the_source_then_records_the_refund() -> None:
    saga, reactions = run(
        REQUESTED,
        Debited(T, "EUR"),
        Recorded(T, "debited", 1_100),
        Refused(T, "credit", "currency_mismatch", "the account is in USD"),
        Reversing(T, "currency_mismatch", "the account is in USD"),
        Credited(T, reversal=True),
        Recorded(T, "failed", 1_300, "currency_mismatch"),
    )
    _, _, _, refused, reversing, refunded, failed = reactions
    assert steps(refused) == [("FailTransfer", T, "fail")]
    assert dict(refused.sends[0].payload) == {
        "reason": "currency_mismatch",
        "detail": "the account is in USD",
    }
    assert steps(reversing) == [("CreditAccount", SRC, "refund")]
    assert dict(reversing.sends[0].payload) == {
        "transfer_id": T,
        "amount": 500,
        "counterparty_account_id": DST,
        "reversal": True,
        "currency": None,  # the money goes back where it came from: not checked
    }
    assert steps(refunded) == [("RecordRefund", T, "record-refund")]
    assert failed.saga is None and saga is None


def test_a_fact_learnt_twice_asks_for_nothing_more() -> None:
    saga, _ = run(REQUESTED, Debited(T, "EUR"))
    assert saga is not None
    for fact in (REQUESTED, Debited(T, "EUR"), Recorded(T, "debited", 0)):
        again = react(saga, fact, 0, POLICY)
        assert again.sends == ()
        saga = again.saga
        assert saga is not None
    credited = react(saga, Credited(T, reversal=False), 0, POLICY)
    assert credited.saga is not None
    assert react(credited.saga, Credited(T, reversal=False), 0, POLICY).sends == ()


def test_facts_about_an_unknown_transfer_are_ignored() -> None:
    reaction = react(None, Debited("t-unknown", "EUR"), 0, POLICY)
    assert reaction == Reaction(None, (), ("unknown_transfer",))


# -- timeouts ----------------------------------------------------------------------------------


def test_an_unanswered_debit_is_re_sent_then_given_up_and_a_late_debit_is_refunded() -> None:
    saga, _ = run(REQUESTED, now=0)
    assert saga is not None and saga.deadline == 10
    assert timeout(saga, 9.9, POLICY).sends == ()  # not yet
    first = timeout(saga, 10, POLICY)
    assert steps(first) == [("DebitAccount", SRC, "debit")] and first.notes == ("retried",)
    assert first.saga is not None
    second = timeout(first.saga, 20, POLICY)
    assert second.saga is not None and second.saga.retries == 2 and second.saga.stuck
    given_up = timeout(second.saga, 30, POLICY)
    assert steps(given_up) == [("FailTransfer", T, "fail")] and given_up.notes == ("timed_out",)
    assert given_up.sends[0].payload["reason"] == "timed_out"
    assert (
        isinstance(given_up.decision, GaveUp)
        and given_up.decision.detail == given_up.sends[0].payload["detail"]
    )
    saga = given_up.saga
    assert saga is not None
    failed = react(saga, Recorded(T, "failed", 5_000, "timed_out"), 31, POLICY)
    assert failed.saga is not None  # the debit is unanswered: it may still land
    assert pending(failed.saga) == ()  # and is never sent again
    late = react(failed.saga, Debited(T, "EUR"), 40, POLICY)
    assert steps(late) == [("CreditAccount", SRC, "refund")] and late.notes == ("late_debit_refunded",)
    assert late.saga is not None
    refunded = react(late.saga, Credited(T, reversal=True), 41, POLICY)
    assert refunded.sends == () and refunded.saga is None  # no RecordRefund: the transfer failed


def test_a_late_debit_before_the_failure_is_recorded_is_refunded_too() -> None:
    saga = replace(Saga(T, SRC, DST, 500, 0), gave_up=True, failure=("timed_out", "d"))
    late = react(saga, Debited(T, "EUR"), 0, POLICY)
    assert steps(late) == [("CreditAccount", SRC, "refund")]
    assert late.saga is not None
    # While FailTransfer is not recorded, both are pending: the failure and the refund.
    assert [s.step for s in pending(late.saga)] == ["fail", "refund"]


def test_a_debit_refused_after_giving_up_settles_the_transfer() -> None:
    saga = replace(Saga(T, SRC, DST, 500, 0), gave_up=True, failure=("timed_out", "d"), status="failed")
    refused = react(saga, Refused(T, "debit", "insufficient_funds", "x"), 0, POLICY)
    assert refused.sends == () and refused.saga is None


def test_a_debited_transfer_is_never_timed_out_only_re_sent() -> None:
    saga, _ = run(REQUESTED, Debited(T, "EUR"), Recorded(T, "debited", 0))
    assert saga is not None
    for n in range(1, 10):
        reaction = timeout(saga, 10.0 * n, POLICY)
        assert steps(reaction) == [("CreditAccount", DST, "credit")]
        assert reaction.saga is not None
        saga = reaction.saga
    assert saga.retries == 9 and saga.stuck and not saga.gave_up


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        ([REQUESTED], ["debit"]),
        ([REQUESTED, Debited(T, "EUR")], ["mark-debited", "credit"]),
        ([REQUESTED, Debited(T, "EUR"), Recorded(T, "debited", 0)], ["credit"]),
        ([REQUESTED, Debited(T, "EUR"), Credited(T, False)], ["mark-debited", "complete"]),
        ([REQUESTED, Refused(T, "debit", "account_closed", "")], ["fail"]),
        (
            [REQUESTED, Debited(T, "EUR"), Refused(T, "credit", "account_closed", "")],
            ["mark-debited", "fail"],
        ),
        ([REQUESTED, Debited(T, "X"), Refused(T, "credit", "r", ""), Reversing(T, "r", "")], ["refund"]),
        (
            [
                REQUESTED,
                Debited(T, "X"),
                Refused(T, "credit", "r", ""),
                Reversing(T, "r", ""),
                Credited(T, True),
            ],
            ["record-refund"],
        ),
        (
            [*REVERSING, Refused(T, "refund", "balance_limit_exceeded", "")],
            [],  # nothing is safe: left for an operator (counted)
        ),
    ],
)
def test_the_pending_step_of_each_state(facts: list[Any], expected: list[str]) -> None:
    saga, _ = run(*facts)
    assert saga is not None
    assert [s.step for s in pending(saga)] == expected
    resent = timeout(saga, 1_000, POLICY)
    assert [s.step for s in resent.sends] == expected
    assert all(s.command_id == command_id(T, s.step) for s in resent.sends)  # the same ids again


# -- records to facts --------------------------------------------------------------------------


def test_records_become_facts_only_for_the_process_own_commands() -> None:
    base = {"aggregate_id": T, "occurred_at": AT}
    requested = {**base, "from_account_id": SRC, "to_account_id": DST, "amount": 5}
    assert transfer_fact("TransferRequested", requested) == Requested(
        T, SRC, DST, 5, int(AT.timestamp() * 1000)
    )
    assert transfer_fact("TransferFailed", {**base, "reason": "r", "detail": "d"}) == Recorded(
        T, "failed", int(AT.timestamp() * 1000), "r"
    )
    debited = {"transfer_id": T, "command_id": command_id(T, "debit"), "currency": "EUR"}
    assert account_fact("AccountDebited", debited) == Debited(T, "EUR")
    assert account_fact("AccountDebited", {**debited, "currency": ""}) == Debited(T, None)  # a v1 event
    assert account_fact("AccountDebited", {**debited, "command_id": "someone-else"}) is None
    credited = {"transfer_id": T, "command_id": command_id(T, "refund"), "reversal": True}
    assert account_fact("AccountCredited", credited) == Credited(T, reversal=True)
    assert account_fact("MoneyDeposited", {"amount": 5}) is None
    result = {
        "command_id": command_id(T, "credit"),
        "correlation_id": T,
        "status": "REJECTED",
        "reason": "account_closed",
        "detail": "closed",
    }
    assert account_fact("CommandResult", result) == Refused(T, "credit", "account_closed", "closed")
    assert account_fact("CommandResult", {**result, "status": "ACCEPTED"}) is None
    # An answer about a delivery (a re-send, a wrong partition) is not a decision on the step.
    assert account_fact("CommandResult", {**result, "reason": "idempotency_key_reused"}) is None
    assert account_fact("CommandResult", {**result, "correlation_id": "t-2"}) is None
    gave_up = {"command_id": command_id(T, "fail"), "aggregate_id": T, "reason": "timed_out", "detail": "d"}
    assert account_fact("FailTransfer", gave_up) == GaveUp(T, "d")


# -- the loop with fakes -----------------------------------------------------------------------

codec = SingleObjectCodec()
PARTITIONS = 12
TOPICS = {
    name: PARTITIONS
    for name in (
        "events.transfer",
        "events.account",
        "results.account",
        "commands.account",
        "commands.transfer",
        "facts",
    )
}


class FakeMessage:
    def __init__(self, topic: str, partition: int, offset: int, value: bytes) -> None:
        self._topic, self._partition, self._offset, self._value = topic, partition, offset, value

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes:
        return self._value

    def error(self) -> None:
        return None


class FakeProducer:
    """Records what a transaction held; `fail_commit` makes the next commit abortable."""

    def __init__(self) -> None:
        self.committed: list[dict[str, Any]] = []
        self.open: dict[str, Any] | None = None
        self.fail_commit = False
        self.aborted = 0
        self.inits = 0
        self.purged = 0

    def init_transactions(self, timeout: float | None = None) -> None:
        self.inits += 1

    def purge(self) -> None:
        self.purged += 1

    def begin_transaction(self) -> None:
        assert self.open is None
        self.open = {"records": [], "offsets": []}

    def produce(self, topic: str, **kwargs: Any) -> None:
        assert self.open is not None
        self.open["records"].append((topic, kwargs))
        kwargs["on_delivery"](None, None)

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float = 0) -> int:
        return 0

    def send_offsets_to_transaction(self, offsets: list[Any], metadata: Any, timeout: float = -1) -> None:
        assert self.open is not None
        self.open["offsets"] = [(tp.topic, tp.partition, tp.offset) for tp in offsets]

    def commit_transaction(self, timeout: float = -1) -> None:
        if self.fail_commit:
            self.fail_commit = False
            error = KafkaError(KafkaError._FENCED, "fake", txn_requires_abort=True)
            raise KafkaException(error)
        assert self.open is not None
        self.committed.append(self.open)
        self.open = None

    def abort_transaction(self, timeout: float = -1) -> None:
        self.open, self.aborted = None, self.aborted + 1


class FakeConsumer:
    def __init__(self) -> None:
        self.seeks: list[tuple[str, int, int]] = []

    def consumer_group_metadata(self) -> str:
        return "group-metadata"

    def assignment(self) -> list[Any]:
        from confluent_kafka import TopicPartition

        return [TopicPartition(t, p) for t in TOPICS for p in range(PARTITIONS)]

    def seek(self, tp: Any) -> None:
        self.seeks.append((tp.topic, tp.partition, tp.offset))


def batch(*messages: FakeMessage) -> list[Any]:
    return list(messages)


def fake_process() -> tuple[TransferProcess, FakeConsumer, FakeProducer]:
    config = Config("unused:9092", "transfer-process", "i", "account", "transfer", "facts", POLICY)
    consumer, producer = FakeConsumer(), FakeProducer()
    process = TransferProcess(config, codec, clock=lambda: 0.0, clients=(consumer, producer, TOPICS))  # type: ignore[arg-type]
    process.owned = set(range(PARTITIONS))
    return process, consumer, producer


def event(name: str, aggregate_id: str, **fields: Any) -> bytes:
    envelope = {
        "event_id": str(uuid.uuid4()),
        "aggregate_type": "x",
        "aggregate_id": aggregate_id,
        "version": 1,
        "event_type": name,
        "occurred_at": AT,
        "command_id": fields.pop("command_id", str(uuid.uuid4())),
        "correlation_id": T,
        "causation_id": "c",
    }
    return codec.encode(name, {**envelope, **fields})


def decoded(record: tuple[str, dict[str, Any]]) -> tuple[str, str, dict[str, Any]]:
    topic, kwargs = record
    value = codec.decode(kwargs["value"])
    return topic, value.name, value.record


def test_the_loop_sends_each_reaction_with_the_consumed_offsets_in_one_transaction() -> None:
    process, _, producer = fake_process()
    requested = event("TransferRequested", T, from_account_id=SRC, to_account_id=DST, amount=500)
    process.process(batch(FakeMessage("events.transfer", partition_for(T, 12), 7, requested)), [], 0.0)
    (txn,) = producer.committed
    ((topic, kwargs),) = txn["records"]
    assert topic == "commands.account" and kwargs["key"] == SRC
    assert kwargs["partition"] == partition_for(SRC, PARTITIONS)  # the contract's murmur2, explicit
    assert kwargs["headers"] == [(COMMAND_ID_HEADER, command_id(T, "debit").encode())]
    _, name, record = decoded((topic, kwargs))
    assert name == "DebitAccount" and record["command_id"] == command_id(T, "debit")
    assert record["correlation_id"] == T and record["expected_version"] is None
    assert txn["offsets"] == [("events.transfer", partition_for(T, 12), 8)]

    # The source account's AccountDebited: re-keyed onto the facts topic, and (this process owns
    # the transfer) MarkTransferDebited + CreditAccount, in the same transaction as its offset.
    debited = event(
        "AccountDebited",
        SRC,
        command_id=command_id(T, "debit"),
        transfer_id=T,
        amount=500,
        counterparty_account_id=DST,
        currency="EUR",
    )
    process.process(batch(FakeMessage("events.account", partition_for(SRC, 12), 3, debited)), [], 0.0)
    txn = producer.committed[1]
    sent = [decoded(r) for r in txn["records"]]
    assert [(t, n) for t, n, _ in sent] == [
        ("facts", "AccountDebited"),
        ("commands.transfer", "MarkTransferDebited"),
        ("commands.account", "CreditAccount"),
    ]
    assert txn["records"][0][1]["key"] == T and txn["records"][0][1]["partition"] == partition_for(T, 12)
    assert sent[2][2]["currency"] == "EUR" and sent[2][2]["aggregate_id"] == DST
    assert txn["offsets"] == [("events.account", partition_for(SRC, 12), 4)]
    assert process.counters.sent == {"debit": 1, "mark-debited": 1, "credit": 1}

    # The same fact read back from the facts topic asks for nothing.
    forwarded = txn["records"][0][1]["value"]
    process.process(batch(FakeMessage("facts", partition_for(T, 12), 0, forwarded)), [], 0.0)
    assert producer.committed[2]["records"] == []


def test_an_aborted_transaction_changes_nothing_and_its_batch_is_read_again() -> None:
    process, consumer, producer = fake_process()
    requested = event("TransferRequested", T, from_account_id=SRC, to_account_id=DST, amount=500)
    message = FakeMessage("events.transfer", partition_for(T, 12), 7, requested)
    producer.fail_commit = True
    process.process(batch(message), [], 0.0)
    assert producer.aborted == 1 and producer.committed == [] and process.sagas == {}
    assert consumer.seeks == [("events.transfer", partition_for(T, 12), 7)]
    process.process(batch(message), [], 0.0)  # read again: reacted to as the first time
    assert len(producer.committed) == 1 and T in process.sagas


def test_a_give_up_is_recorded_on_the_facts_topic_with_its_command() -> None:
    process, _, producer = fake_process()
    process.sagas[T] = replace(Saga(T, SRC, DST, 500, 0), retries=POLICY.max_retries, deadline=0)
    process.process([], [T], 100.0)
    (txn,) = producer.committed
    sent = [decoded(r) for r in txn["records"]]
    assert [(t, n) for t, n, _ in sent] == [("commands.transfer", "FailTransfer"), ("facts", "FailTransfer")]
    assert sent[0][2]["reason"] == "timed_out" and sent[0][2] == {
        **sent[1][2],
        "issued_at": sent[0][2]["issued_at"],
    }
    assert process.sagas[T].gave_up and process.counters.notes["timed_out"] == 1
    # After a restart the facts topic tells it: the saga knows it gave up.
    rebuilt = account_fact("FailTransfer", sent[1][2])
    assert rebuilt == GaveUp(T, sent[0][2]["detail"])


def test_on_assignment_sagas_are_rebuilt_and_a_partition_never_committed_is_resumed_at_once() -> None:
    from confluent_kafka import TopicPartition

    process, consumer, _ = fake_process()
    process.owned = set()
    old, new = "t-old", "t-new"
    p_old, p_new = partition_for(old, 12), partition_for(new, 12)
    assert p_old != p_new
    replays: list[tuple[str, dict[int, int]]] = []

    def replay(topic: str, partitions: list[Any], sagas: dict[str, Saga]) -> tuple[dict[int, int], int]:
        replays.append((topic, {tp.partition: tp.offset for tp in partitions}))
        if topic == "events.transfer":
            for t in (old, new):
                sagas[t] = Saga(t, SRC, DST, 5, 0)
        return {tp.partition: 42 for tp in partitions}, 1

    assigned: list[Any] = []
    consumer.committed = lambda tps, timeout: [  # type: ignore[attr-defined]
        TopicPartition(tp.topic, tp.partition, 10 if tp.partition == p_old else -1001) for tp in tps
    ]
    consumer.assign = assigned.extend  # type: ignore[attr-defined]
    process._replay = replay  # type: ignore[method-assign]
    tps = [
        TopicPartition(t, p) for t in ("events.transfer", "facts", "events.account") for p in (p_old, p_new)
    ]
    process._on_assign(consumer, tps)  # type: ignore[arg-type]

    # Transfer events before facts, each up to the committed offset (-1001: to its end).
    assert replays == [("events.transfer", {p_old: 10, p_new: -1001}), ("facts", {p_old: 10, p_new: -1001})]
    assert process.owned == {p_old, p_new}
    assert process.sagas[old].deadline == POLICY.timeout_s  # resumes reading: its timeout starts
    assert process.sagas[new].deadline == 0.0  # never committed: its pending step goes out at once
    offsets = {(tp.topic, tp.partition): tp.offset for tp in assigned}
    assert offsets[("events.transfer", p_new)] == 42 and offsets[("events.transfer", p_old)] == 10
    assert offsets[("events.account", p_new)] == -1001  # the account side reads from its start
    process.process([], process._due(0.0), 0.0)
    assert process.counters.sent == {"debit": 1}  # the new transfer's debit, not the old one's


def test_every_step_is_sent_on_behalf_of_who_requested_the_transfer() -> None:
    record = {"aggregate_id": T, "occurred_at": datetime.now(UTC), "from_account_id": SRC,
              "to_account_id": DST, "amount": 500, "actor": "alice", "actor_owner_id": "alice"}  # fmt: skip
    requested = transfer_fact("TransferRequested", record)
    assert isinstance(requested, Requested) and requested.actor == ("alice", "alice")
    _, reactions = run(requested, Debited(T, "EUR"))
    sends = [s for r in reactions for s in r.sends]
    assert sends and all(s.actor == ("alice", "alice") for s in sends)
    older = transfer_fact("TransferRequested", {**record, "actor": None, "actor_owner_id": None})
    assert isinstance(older, Requested) and older.actor is None  # a request from before actors


class ErrorMessage(FakeMessage):
    def __init__(self, error: KafkaError) -> None:
        super().__init__("", 0, -1, b"")
        self._error = error

    def error(self) -> KafkaError:  # type: ignore[override]
        return self._error


def test_a_broker_outage_is_weather_client_errors_are_passed_over_and_timeouts_abort() -> None:
    process, consumer, producer = fake_process()
    down = ErrorMessage(KafkaError(KafkaError._ALL_BROKERS_DOWN, "all brokers down"))
    requested = event("TransferRequested", T, from_account_id=SRC, to_account_id=DST, amount=500)
    message = FakeMessage("events.transfer", partition_for(T, 12), 7, requested)
    assert process._without_client_errors([down, message]) == [message]  # type: ignore[list-item]
    fatal = ErrorMessage(KafkaError(KafkaError._FENCED, "fenced", fatal=True))
    assert process._without_client_errors([fatal]) == [fatal]  # type: ignore[list-item]

    def timed_out(timeout: float = 0) -> int:  # the outage outlasted the transaction's deliveries
        return 1  # records still unacknowledged

    producer.flush = timed_out  # type: ignore[method-assign]
    process.process(batch(message), [], 0.0)
    assert producer.aborted == 1 and producer.committed == [] and process.sagas == {}
    assert consumer.seeks == [("events.transfer", partition_for(T, 12), 7)]


class FatalAbortProducer(FakeProducer):
    """Its commit fails abortably, then its abort fails fatally (seen after a broker restart)."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_commit = True

    def abort_transaction(self, timeout: float = -1) -> None:
        error = KafkaError(
            KafkaError.INVALID_TXN_STATE, "Failed to end transaction: invalid state", fatal=True
        )
        raise KafkaException(error)


class LoopConsumer(FakeConsumer):
    """A group member for run(): `script` gives what each consume returns (a callable is called
    first: an assignment); when it runs out, a stop is requested."""

    def __init__(self, process: TransferProcess | None, script: list[Any], committed: int = -1001) -> None:
        super().__init__()
        self.process, self.script, self.offset = process, script, committed
        self.callbacks: dict[str, Any] = {}
        self.closed = False

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.callbacks = callbacks

    def consume(self, num_messages: int, timeout: float) -> list[Any]:
        if timeout == 0:
            return []  # the rest of a batch
        if not self.script:
            assert self.process is not None
            self.process.stop_requested.set()
            return []
        step = self.script.pop(0)
        if callable(step):
            step = step(self)
        return list(step)

    def committed(self, partitions: list[Any], timeout: float) -> list[Any]:
        from confluent_kafka import TopicPartition

        return [TopicPartition(tp.topic, tp.partition, self.offset) for tp in partitions]

    def assign(self, partitions: list[Any]) -> None:
        self.assigned = partitions

    def close(self) -> None:
        self.closed = True


def test_a_fatal_abort_replaces_the_producer_and_the_batch_is_read_again_from_the_commit() -> None:
    from confluent_kafka import TopicPartition

    process, _, _ = fake_process()
    requested = event("TransferRequested", T, from_account_id=SRC, to_account_id=DST, amount=500)
    p = partition_for(T, 12)
    message = FakeMessage("events.transfer", p, 7, requested)
    old_producer, new_producer = FatalAbortProducer(), FakeProducer()
    old_consumer = LoopConsumer(process, [[message]])

    def assignment(consumer: LoopConsumer) -> list[Any]:
        tps = [TopicPartition(t, p) for t in ("events.transfer", "facts")]
        consumer.callbacks["on_assign"](consumer, tps)
        return [message]  # read again from the committed offset (7)

    new_consumer = LoopConsumer(process, [assignment], committed=7)
    process.consumer, process.producer = old_consumer, old_producer  # type: ignore[assignment]
    process._new_producer = lambda: new_producer  # type: ignore[assignment,method-assign,return-value]
    process._new_consumer = lambda: new_consumer  # type: ignore[assignment,method-assign,return-value]
    process.sagas["t-stale"] = Saga("t-stale", SRC, DST, 1, 0)  # in memory only: forgotten
    replayed: list[str] = []

    def replay(topic: str, partitions: list[Any], sagas: dict[str, Saga]) -> tuple[dict[int, int], int]:
        replayed.append(topic)
        return {}, 0

    process._replay = replay  # type: ignore[method-assign]

    process.run()  # returns on the stop the script asks for: it did not raise

    assert old_producer.inits == 1 and old_producer.committed == [] and old_producer.purged == 1
    assert old_consumer.closed  # the old member left the group
    assert new_producer.inits == 1  # the same transactional id, initialised anew
    assert replayed == ["events.transfer", "facts"]  # the sagas rebuilt from the log
    assert "t-stale" not in process.sagas and T in process.sagas
    (txn,) = new_producer.committed  # the batch, read again, decided once more and committed
    assert [decoded(r)[1] for r in txn["records"]] == ["DebitAccount"]
    assert txn["offsets"] == [("events.transfer", p, 8)]
    assert new_consumer.closed and process.counters.transactions == 1


def test_an_authorization_error_is_raised_other_consumer_errors_are_passed_over() -> None:
    process, _, producer = fake_process()
    down = ErrorMessage(KafkaError(KafkaError._TRANSPORT, "broker down"))
    denied = ErrorMessage(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "not authorized"))
    consumer = LoopConsumer(process, [[down], [denied]])
    process.consumer = consumer  # type: ignore[assignment]
    with pytest.raises(KafkaException) as raised:
        process.run()
    assert raised.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert consumer.closed and producer.committed == []


def test_init_transactions_waits_out_an_outage() -> None:
    process, _, producer = fake_process()
    calls: list[int] = []

    def init(timeout: float | None = None) -> None:
        calls.append(1)
        if len(calls) < 3:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "broker away"))

    producer.init_transactions = init  # type: ignore[method-assign]
    process.patience.stop.wait = lambda delay: False  # type: ignore[method-assign]  # no real pauses
    process.consumer = LoopConsumer(process, [])  # type: ignore[assignment]
    process.run()
    assert len(calls) == 3
