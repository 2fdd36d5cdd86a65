"""A processor that stalls while holding a batch, loses its partitions, then wakes up and tries
to append that stale batch: Kafka fences it, and nothing it wrote becomes visible."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import KafkaException

from producers.engine.batch import Batch
from producers.processor import build
from producers.settings import ProcessorSettings
from tests.conftest import Stack
from tests.support.kafka import Aggregate, CommandSender, Processor, read_topic, wait_for_results

pytestmark = pytest.mark.integration


def test_a_paused_processor_whose_partitions_moved_cannot_append(
    stack: Stack, unique: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    aggregate = Aggregate.create(stack.kafka_bootstrap_servers, unique, partitions=2)
    zombie = build(
        ProcessorSettings(
            kafka_bootstrap_servers=stack.kafka_bootstrap_servers,
            topic_suffix=aggregate.name,
            processor_group_id=f"command-processor.{aggregate.name}",
            processor_instance_id="zombie",
            processor_session_timeout_ms=6000,
            processor_max_poll_interval_ms=7000,
        )
    )
    zombie.producer.init_transactions()
    zombie.consumer.subscribe(
        [zombie.writer.commands],
        on_assign=zombie._on_assign,
        on_revoke=zombie._on_revoke,
        on_lost=zombie._on_revoke,
    )
    # The worst case, pinned: the zombie's stale events reach the log before its consumed offsets
    # go to the group coordinator, which is where Kafka fences it. process() otherwise sends the
    # offsets while the events are still lingering in the producer, and when the coordinator's
    # refusal comes first the aborted transaction purges them unsent: safe too, but then this
    # test could not show that events already in the log stay invisible.
    send_offsets = zombie._send_offsets

    def offsets_after_the_events(batch: Batch) -> Callable[[], None] | None:
        assert zombie.producer.flush(30) == 0
        return send_offsets(batch)

    monkeypatch.setattr(zombie, "_send_offsets", offsets_after_the_events)
    sender = CommandSender(aggregate)
    account = f"z{unique}"
    opened = sender.send("OpenAccount", account, {"owner_id": "o", "currency": "EUR", "overdraft_limit": 0})
    sender.flush()
    deadline = time.monotonic() + 60
    while opened not in {
        r["command_id"] for *_, r in read_topic(aggregate.bootstrap, f"results.{aggregate.name}")
    }:
        assert time.monotonic() < deadline
        batch = zombie.consumer.consume(100, timeout=0.5)
        if batch:
            zombie.process(batch)

    deposit = sender.send("DepositMoney", account, {"amount": 10, "reference": None, "channel": "t"})
    sender.flush()
    held: list = []
    while not held:  # the zombie fetches the deposit ... and stalls before processing it
        held = [m for m in zombie.consumer.consume(100, timeout=0.5) if not m.error()]

    successor = Processor(aggregate, "successor", tmp_path).start()
    try:
        successor.wait_assigned(within_s=60)  # after the zombie's max.poll.interval ran out
        results = wait_for_results(aggregate.bootstrap, aggregate, {deposit}, within_s=60)
        assert results[deposit][0]["version"] == 2  # the successor appended version 2

        # The zombie wakes up and appends its stale decision: version 2 again.
        try:
            zombie.process(held)
        except KafkaException as exc:  # fenced as fatal rather than abortable: also no commit
            print(f"zombie refused: {exc}")

        versions = [
            r["version"]
            for *_, r in read_topic(aggregate.bootstrap, f"events.{aggregate.name}")
            if r["aggregate_id"] == account
        ]
        assert sorted(versions) == [1, 2], versions
        # The zombie did write its version 2, inside a transaction that never committed.
        written = [
            r["version"]
            for *_, r in read_topic(aggregate.bootstrap, f"events.{aggregate.name}", committed=False)
            if r["aggregate_id"] == account
        ]
        assert sorted(written) == [1, 2, 2], written
        results = wait_for_results(aggregate.bootstrap, aggregate, {deposit})
        assert len(results[deposit]) == 1, results[deposit]
    finally:
        successor.stop()
        # Let the zombie learn it lost its partitions, then close it without letting a close
        # that waits on a rebalance hold the test run hostage.
        for _ in range(4):
            zombie.consumer.consume(10, timeout=0.5)
        closer = threading.Thread(target=zombie.consumer.close, daemon=True)
        closer.start()
        closer.join(15)
