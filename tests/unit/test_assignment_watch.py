"""The command processor's watch on its group assignment (producers/engine/processor.py): when a
member that lost its partitions is to be replaced."""

from __future__ import annotations

import logging
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

import producers.engine.processor as engine
from producers.engine.kafka_errors import QuietLog
from producers.engine.processor import AssignmentWatch, CommandProcessor


def test_a_member_with_an_assignment_is_never_overdue() -> None:
    watch = AssignmentWatch(limit_s=30)
    assert not watch.overdue(1e9)
    watch.count_from(0)  # subscribed
    watch.assigned()  # an empty assignment too: more members than partitions
    assert not watch.overdue(1e9) and watch.waited(1e9) == 0


def test_overdue_only_after_the_limit_counted_from_the_first_revoke() -> None:
    watch = AssignmentWatch(limit_s=30)
    watch.unassigned(100)
    watch.unassigned(120)  # revoked, then lost: still counted from the first
    assert not watch.overdue(130)
    assert watch.overdue(130.5) and watch.waited(130.5) == 30.5


def test_kafka_away_counts_again_and_a_new_member_starts_afresh() -> None:
    watch = AssignmentWatch(limit_s=30)
    watch.unassigned(0)
    watch.count_from(40)  # Kafka did not answer at 40: wait for librdkafka's own rejoin
    assert not watch.overdue(60) and watch.overdue(71)
    watch.count_from(71)  # the replacement subscribed
    assert not watch.overdue(100)


def test_an_assignment_that_could_not_be_taken_up_is_overdue_at_once() -> None:
    watch = AssignmentWatch(limit_s=30)
    watch.expire()
    assert watch.overdue(0)
    watch.unassigned(5)  # its revoke when it is closed does not hide it
    assert watch.overdue(5)


# -- the main loop's use of it, on fakes --------------------------------------------------------


class FakeConsumer:  # and, for list_topics, a producer
    def __init__(self, answers: bool = True, close_blocks: threading.Event | None = None) -> None:
        self.answers, self.close_blocks = answers, close_blocks
        self.subscribed: list[str] = []
        self.closed = False

    def list_topics(self, topic: str, timeout: float) -> object:
        if not self.answers:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "metadata"))
        return object()

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.subscribed = topics

    def close(self) -> None:
        if self.close_blocks is not None:
            self.close_blocks.wait()
        self.closed = True


def processor_on(
    consumer: FakeConsumer, fresh: list[FakeConsumer], kafka_answers: bool = True
) -> CommandProcessor:
    """A processor with only what the watch needs: its consumer, a producer to ask Kafka's metadata
    of, its writer's partitions, a log."""
    processor = CommandProcessor.__new__(CommandProcessor)
    processor.consumer = consumer  # type: ignore[assignment]
    processor.producer = FakeConsumer(answers=kafka_answers)  # type: ignore[assignment]
    processor.writer = SimpleNamespace(commands="commands.x", owned={0: "state", 1: "state"})  # type: ignore[assignment]
    processor.quiet = QuietLog(logging.getLogger("watch-test"))
    processor.watch = AssignmentWatch(limit_s=30)
    processor._new_consumer = lambda: fresh.pop(0)  # type: ignore[method-assign]
    return processor


def test_an_overdue_member_is_replaced_while_kafka_answers() -> None:
    old, new = FakeConsumer(), FakeConsumer()
    processor = processor_on(old, [new])
    processor.watch.unassigned(time.monotonic() - 31)
    assert processor._watch_assignment()
    assert processor.consumer is new and new.subscribed == ["commands.x"] and old.closed
    assert processor.writer.owned == {} and not processor.watch.overdue(time.monotonic())
    # the old member's revoke, when it comes, is not the new member's
    processor._on_revoke(old, [TopicPartition("commands.x", 0)])  # type: ignore[arg-type]
    assert processor.watch.since is not None and not processor.watch.overdue(time.monotonic() + 29)


def test_while_kafka_does_not_answer_the_member_is_kept_and_the_wait_counted_again() -> None:
    old = FakeConsumer()
    processor = processor_on(old, [], kafka_answers=False)
    processor.watch.unassigned(time.monotonic() - 31)
    assert not processor._watch_assignment()
    assert processor.consumer is old and not old.closed
    assert not processor.watch.overdue(time.monotonic())


def test_a_member_blocked_in_close_does_not_hold_the_rejoin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "CALL_TIMEOUT_S", 0.2)
    forever = threading.Event()
    old, new = FakeConsumer(close_blocks=forever), FakeConsumer()
    processor = processor_on(old, [new])
    processor.watch.expire()  # an assignment that could not be taken up
    began = time.monotonic()
    assert processor._watch_assignment()
    assert processor.consumer is new and time.monotonic() - began < 5
    forever.set()
