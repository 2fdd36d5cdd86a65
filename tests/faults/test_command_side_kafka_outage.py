"""The command processor rides out a Kafka outage under load: the broker SIGKILLed and restarted,
or SIGSTOPped past the transaction and session timeouts. The processor keeps running (same pid),
and every command Kafka acknowledged has exactly one result and its event exactly once, with
contiguous versions: an aborted batch is read again, a fenced producer is replaced."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaException, Producer

from schemas.kafka_security import kafka_config
from schemas.keys import partition_for
from tests.faults.conftest import PrivateStack
from tests.support.kafka import Aggregate, Processor, codec, read_topic, wait_for_results

pytestmark = pytest.mark.faults

ACCOUNTS = 20
# What the processor logs when it replaces its producer: fenced (_FENCED, INVALID_TXN_STATE ...), or
# stuck in librdkafka's send_offsets_to_transaction past its timeout (librdkafka #5456, #5511).
REPLACED = "replacing the transactional producer"


class Load(threading.Thread):
    """Deposit commands at a steady rate straight onto commands.<aggregate>; remembers which ones
    Kafka acknowledged (those must be decided, exactly once)."""

    def __init__(self, aggregate: Aggregate, accounts: list[str], per_second: float) -> None:
        super().__init__(daemon=True)
        self.aggregate, self.accounts, self.interval = aggregate, accounts, 1 / per_second
        self.producer = Producer(
            kafka_config(aggregate.bootstrap, {"linger.ms": 5, "enable.idempotence": True})
        )
        self.sent: list[str] = []
        self.acked: set[str] = set()
        self.failed: dict[str, str] = {}
        self.stopped = threading.Event()

    def _delivered(self, command_id: str) -> Any:
        def callback(err: Any, _msg: Any) -> None:
            if err is None:
                self.acked.add(command_id)
            else:
                self.failed[command_id] = str(err)

        return callback

    def send(self, name: str, account_id: str, payload: dict[str, Any]) -> str:
        command_id = str(uuid.uuid4())
        record = {
            "command_id": command_id,
            "aggregate_id": account_id,
            "expected_version": None,
            "correlation_id": command_id,
            "issued_at": datetime.now(UTC),
            **payload,
        }
        self.producer.produce(
            f"commands.{self.aggregate.name}",
            key=account_id,
            value=codec.encode(name, record),
            partition=partition_for(account_id, self.aggregate.partitions),
            on_delivery=self._delivered(command_id),
        )
        self.sent.append(command_id)
        self.producer.poll(0)
        return command_id

    def run(self) -> None:
        n = 0
        next_at = time.monotonic()
        while not self.stopped.is_set():
            self.send(
                "DepositMoney",
                self.accounts[n % len(self.accounts)],
                {"amount": 1, "reference": None, "channel": "t"},
            )
            n += 1
            next_at += self.interval
            time.sleep(max(0.0, next_at - time.monotonic()))

    def finish(self, within_s: float = 120) -> None:
        self.stopped.set()
        self.join()
        assert self.producer.flush(within_s) == 0, "the load's commands were never acknowledged"


def open_accounts(aggregate: Aggregate, unique: str) -> tuple[list[str], Load]:
    """ACCOUNTS accounts, opened and answered before the load starts."""
    accounts = [f"f{unique}-{i}" for i in range(ACCOUNTS)]
    opener = Load(aggregate, accounts, 100)
    ids = {
        opener.send("OpenAccount", a, {"owner_id": "o", "currency": "EUR", "overdraft_limit": 0})
        for a in accounts
    }
    opener.producer.flush(30)
    wait_for_results(aggregate.bootstrap, aggregate, ids, within_s=60)
    return accounts, opener


def results_for(
    aggregate: Aggregate, command_ids: set[str], within_s: float = 90
) -> dict[str, list[dict[str, Any]]]:
    """wait_for_results, read again while the broker that just came back still sorts out its
    partitions' leaders (watermark requests fail for a moment)."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            return wait_for_results(
                aggregate.bootstrap, aggregate, command_ids, within_s=max(1, deadline - time.monotonic())
            )
        except KafkaException:
            assert time.monotonic() < deadline
            time.sleep(0.5)


def check_exactly_once(aggregate: Aggregate, load: Load, within_s: float = 90) -> dict[str, int]:
    """Every acknowledged command: one result, accepted, its one event; versions 1..n per account."""
    acked = set(load.acked)
    results = results_for(aggregate, acked, within_s)
    doubled = {cid for cid, r in results.items() if len(r) != 1}
    lost = acked - set(results)
    assert not doubled, f"{len(doubled)} commands have more than one result"
    refused = {
        cid: r[0]["reason"] for cid, r in results.items() if cid in acked and r[0]["status"] != "ACCEPTED"
    }
    assert not refused, refused
    events = Counter()
    versions: dict[str, list[int]] = defaultdict(list)
    for _, _, _, event in read_topic(aggregate.bootstrap, f"events.{aggregate.name}"):
        events[event["command_id"]] += 1
        versions[event["aggregate_id"]].append(event["version"])
    applied_twice = [cid for cid, n in events.items() if n > 1]
    assert not applied_twice, f"{len(applied_twice)} commands applied twice"
    assert all(events[cid] == 1 for cid in acked), "an acknowledged command has no event"
    for account_id, seen in versions.items():
        assert seen == list(range(1, len(seen) + 1)), f"{account_id}: versions {seen}"
    return {
        "sent": len(load.sent),
        "acknowledged": len(acked),
        "not acknowledged": len(load.failed),
        "lost": len(lost),
        "applied twice": len(applied_twice),
        "results": sum(len(results[cid]) for cid in acked),
    }


def start_processor(aggregate: Aggregate, tmp_path: Path, **settings: str) -> Processor:
    processor = Processor(aggregate, "p1", tmp_path)
    env = {**aggregate.env("p1"), **settings}
    processor.spawn("producers.processor", env)
    processor.wait_assigned()
    return processor


def wait_answered(aggregate: Aggregate, load: Load, since: int, within_s: float = 90) -> float:
    """Seconds until 20 commands sent from index `since` on have results (the processor is back)."""
    began = time.monotonic()
    while len(load.sent) < since + 20:
        time.sleep(0.05)
    results_for(aggregate, set(load.sent[since : since + 20]), within_s)
    return time.monotonic() - began


@pytest.mark.full_faults  # test_under_load.py runs the same fault in `make test`
def test_a_killed_and_restarted_broker_under_load(private_stack: PrivateStack, unique: str) -> None:
    tmp_path = private_stack.log_dir(f"killed-{unique}")
    aggregate = Aggregate.create(private_stack.bootstrap, unique, partitions=4)
    processor = start_processor(aggregate, tmp_path)
    assert processor.process is not None
    pid = processor.process.pid
    try:
        accounts, _ = open_accounts(aggregate, unique)
        load = Load(aggregate, accounts, per_second=100)
        load.start()
        time.sleep(4)
        private_stack.kill_broker()
        killed_at = time.monotonic()
        time.sleep(10)
        startup = private_stack.start_broker()
        outage = time.monotonic() - killed_at
        back = len(load.sent)
        recovered = wait_answered(aggregate, load, back)
        time.sleep(3)
        load.finish()
        report = check_exactly_once(aggregate, load)
        assert processor.process.poll() is None and processor.process.pid == pid, processor.log.read_text()
        print(
            f"\nbroker down {outage:.1f}s (its restart took {startup:.1f}s); commands sent after it "
            f"answered again were answered within {recovered:.1f}s; {report}"
        )
        print("processor log (warnings and up):")
        print(
            "\n".join(line for line in processor.log.read_text().splitlines() if " INFO " not in line)[-4000:]
        )
    finally:
        processor.stop()


def test_a_broker_paused_past_the_transaction_and_session_timeouts(
    private_stack: PrivateStack, unique: str
) -> None:
    aggregate = Aggregate.create(private_stack.bootstrap, unique, partitions=4)
    processor = start_processor(
        aggregate,
        private_stack.log_dir(f"paused-{unique}"),
        PROCESSOR_TRANSACTION_TIMEOUT_MS="4000",
        PROCESSOR_SESSION_TIMEOUT_MS="6000",  # the broker's group.min.session.timeout.ms
    )
    assert processor.process is not None
    pid = processor.process.pid
    try:
        accounts, _ = open_accounts(aggregate, unique)
        load = Load(aggregate, accounts, per_second=100)
        load.start()
        time.sleep(3)
        # Whether the broker, waking up, aborts the timed-out transaction (bumping the epoch: the
        # producer is fenced) before the processor's own abort reaches it is a race: pause again
        # until the log shows the producer replaced, so the test proves it took that path.
        cycles = []
        for _ in range(3):
            private_stack.pause_broker()
            time.sleep(10)  # past the transaction (4 s) and session (6 s) timeouts
            private_stack.resume_broker()
            back = len(load.sent)
            cycles.append(round(wait_answered(aggregate, load, back), 1))
            if REPLACED in processor.log.read_text():
                break
            time.sleep(2)
        time.sleep(2)
        load.finish()
        report = check_exactly_once(aggregate, load)
        log = processor.log.read_text()
        assert processor.process.poll() is None and processor.process.pid == pid, log
        assert REPLACED in log and "producer #2 ready" in log, log
        print(f"\nbroker paused 10 s, {len(cycles)} time(s) until the producer was replaced; commands sent "
              f"after each resume answered within {cycles} s; {report}")  # fmt: skip
        print(
            "\n".join(line for line in log.splitlines() if " INFO " not in line and not line.startswith("%"))
        )
    finally:
        processor.stop()
