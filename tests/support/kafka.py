"""Test helpers that talk to the real Kafka: topics per test, sending commands, reading logs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from infra.settings import TopicSettings
from infra.topics import ensure_topics
from schemas.codec import SingleObjectCodec
from schemas.kafka_security import kafka_config
from schemas.keys import partition_for

codec = SingleObjectCodec()


@dataclass(frozen=True)
class Aggregate:
    """A private set of topics (commands.<name>, events.<name> ...) for one test."""

    name: str
    bootstrap: str
    partitions: int

    @classmethod
    def create(cls, bootstrap: str, unique: str, partitions: int = 6) -> Aggregate:
        name = f"acct{unique}"
        ensure_topics(
            TopicSettings(kafka_bootstrap_servers=bootstrap, aggregates=name, topic_partitions=partitions)
        )
        return cls(name, bootstrap, partitions)

    def env(self, instance: str) -> dict[str, str]:
        return {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "AGGREGATE": "account",
            "TOPIC_SUFFIX": self.name,
            "PROCESSOR_GROUP_ID": f"command-processor.{self.name}",
            "PROCESSOR_INSTANCE_ID": instance,
            "PROCESSOR_SESSION_TIMEOUT_MS": "6000",
            "PROCESSOR_SNAPSHOT_EVERY": "300",
        }


class CommandSender:
    def __init__(self, aggregate: Aggregate) -> None:
        self.aggregate = aggregate
        self.producer = Producer(
            kafka_config(aggregate.bootstrap, {"linger.ms": 5, "enable.idempotence": True})
        )

    def send(
        self,
        name: str,
        aggregate_id: str,
        payload: dict[str, Any],
        *,
        command_id: str | None = None,
        expected_version: int | None = None,
    ) -> str:
        command_id = command_id or str(uuid.uuid4())
        record = {
            "command_id": command_id,
            "aggregate_id": aggregate_id,
            "expected_version": expected_version,
            "correlation_id": command_id,
            "issued_at": datetime.now(UTC),
            **payload,
        }
        while True:
            try:
                self.producer.produce(
                    f"commands.{self.aggregate.name}",
                    key=aggregate_id,
                    value=codec.encode(name, record),
                    partition=partition_for(aggregate_id, self.aggregate.partitions),
                )
                break
            except BufferError:
                self.producer.poll(0.05)
        self.producer.poll(0)
        return command_id

    def flush(self) -> None:
        assert self.producer.flush(30) == 0


def read_topic(
    bootstrap: str, topic: str, *, committed: bool = True, decode: bool = True, with_codec: Any = None
) -> Iterator[tuple[int, int, bytes | None, Any]]:
    """(partition, offset, key, decoded record) of every committed record (every record at all,
    aborted ones included, with committed=False), to the current end."""
    consumer = Consumer(
        {
            **kafka_config(bootstrap),
            "group.id": f"reader-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed" if committed else "read_uncommitted",
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends, assignment = {}, []
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                ends[p] = high
                assignment.append(TopicPartition(topic, p, low))
        consumer.assign(assignment)
        deadline = time.monotonic() + 60
        while ends:
            # read_committed stops at the oldest open transaction: give up loudly, never hang.
            assert time.monotonic() < deadline, f"{topic}: partitions {sorted(ends)} never reached their end"
            for msg in consumer.consume(1000, timeout=0.5):
                if msg.error():
                    raise RuntimeError(msg.error())
                value = (with_codec or codec).decode(msg.value()).record if decode else msg
                yield msg.partition(), msg.offset(), msg.key(), value
            for tp in consumer.position([TopicPartition(topic, p) for p in list(ends)]):
                if tp.offset >= ends[tp.partition]:
                    del ends[tp.partition]
    finally:
        consumer.close()


def wait_for_results(
    bootstrap: str, aggregate: Aggregate, command_ids: set[str], within_s: float = 120
) -> dict[str, list[dict[str, Any]]]:
    """Every committed result per command id, once all the given ids have one."""
    deadline = time.monotonic() + within_s
    while True:
        results: dict[str, list[dict[str, Any]]] = {}
        for _, _, _, record in read_topic(bootstrap, f"results.{aggregate.name}"):
            results.setdefault(record["command_id"], []).append(record)
        missing = command_ids - set(results)
        if not missing:
            return results
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(missing)} commands have no result after {within_s}s")
        time.sleep(1)


class ChildProcess:
    """A service as a real process, so a test can SIGKILL it."""

    process: subprocess.Popen[bytes] | None = None
    log: Path

    def spawn(self, module: str, env: dict[str, str]) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", module], env=env, stdout=log, stderr=subprocess.STDOUT
            )

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Processor(ChildProcess):
    """A command processor as a real process."""

    def __init__(self, aggregate: Aggregate, instance: str, log_dir: Path) -> None:
        self.log = log_dir / f"processor-{instance}.log"
        self.aggregate, self.instance = aggregate, instance
        self.process = None

    def start(self) -> Processor:
        self.spawn("producers.processor", self.aggregate.env(self.instance))
        return self

    def wait_assigned(self, within_s: float = 60) -> None:
        deadline = time.monotonic() + within_s
        while "assigned partitions" not in self.log.read_text(errors="replace"):
            assert self.process is not None and self.process.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, f"{self.instance} got no partitions: {self.log.read_text()}"
            time.sleep(0.1)
