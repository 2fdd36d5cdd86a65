"""Command ingestion: commands.<agg> -> command processor -> committed events, vs a raw produce loop
writing the same Avro events. Run by bench/report.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from bench.common import RESULTS, Figure, Mode, bootstrap, cpu_seconds, kafka, unique
from schemas.codec import SingleObjectCodec
from schemas.keys import event_key, partition_for
from tests.support.kafka import Aggregate, CommandSender

codec = SingleObjectCodec()


def deposit_event(account: str, version: int) -> dict[str, object]:
    command_id = str(uuid.uuid4())
    return {
        "event_id": str(uuid.uuid4()),
        "aggregate_type": "account",
        "aggregate_id": account,
        "version": version,
        "event_type": "MoneyDeposited",
        "occurred_at": datetime.now(UTC),
        "command_id": command_id,
        "correlation_id": command_id,
        "causation_id": command_id,
        "amount": 100,
        "reference": None,
        "channel": "bench",
    }


def raw_produce(count: int, accounts: list[str], partitions: int) -> float:
    """The baseline: encode and produce the same events, best practice, no transactions."""
    topic = unique("bench.raw.")
    admin = AdminClient(kafka())
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result()
    producer = Producer(
        kafka(
            **{
                "linger.ms": 5,
                "batch.size": 1_000_000,
                "enable.idempotence": True,
                "compression.type": "none",
            }
        )
    )
    versions = dict.fromkeys(accounts, 0)
    began = time.perf_counter()
    for n in range(count):
        account = accounts[n % len(accounts)]
        versions[account] += 1
        value = codec.encode("MoneyDeposited", deposit_event(account, versions[account]))
        while True:
            try:
                producer.produce(
                    topic,
                    key=event_key(account, versions[account]),
                    value=value,
                    partition=partition_for(account, partitions),
                )
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    producer.flush()
    elapsed = time.perf_counter() - began
    admin.delete_topics([topic])
    return count / elapsed


def ours(count: int, accounts: list[str], processors: int, partitions: int) -> tuple[float, float]:
    """Pre-load commands, then time the processor from its first result to its last."""
    topics = Aggregate.create(bootstrap(), uuid.uuid4().hex[:8], partitions=partitions)
    aggregate = topics.name
    sender = CommandSender(topics)
    for account in accounts:
        sender.send("OpenAccount", account, {"owner_id": "bench", "currency": "EUR", "overdraft_limit": 0})
    for n in range(count - len(accounts)):
        sender.send(
            "DepositMoney",
            accounts[n % len(accounts)],
            {"amount": 100, "reference": None, "channel": "bench"},
        )
    sender.flush()

    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap(),
        "AGGREGATE": "account",
        "TOPIC_SUFFIX": aggregate,
        "PROCESSOR_GROUP_ID": f"command-processor.{aggregate}",
    }
    started, logs = [], [RESULTS / f"processor-{n}.log" for n in range(processors)]
    for n, path in enumerate(logs):
        with open(path, "wb") as log:
            started.append(
                subprocess.Popen(
                    [sys.executable, "-m", "producers.processor"],
                    env={**env, "PROCESSOR_INSTANCE_ID": f"bench-{n}"},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    try:
        # CPU from each processor's first assignment on: Python's start-up and imports (~1 s of
        # CPU) are not per command.
        at_start = [_cpu_once_assigned(process, path) for process, path in zip(started, logs, strict=True)]
        first, last = _result_span(f"results.{aggregate}", count, partitions)
        cpu = sum(cpu_seconds(p.pid) - c for p, c in zip(started, at_start, strict=True))
    finally:
        for process in started:
            process.terminate()
        for process in started:
            process.wait(30)
    return count / (last - first), cpu


def _cpu_once_assigned(process: subprocess.Popen[bytes], log: Path, within_s: float = 120) -> float:
    deadline = time.monotonic() + within_s
    while b"assigned partitions" not in log.read_bytes():
        assert process.poll() is None, f"the processor exited: see {log}"
        assert time.monotonic() < deadline, f"the processor was not assigned in {within_s:.0f}s: see {log}"
        time.sleep(0.005)
    return cpu_seconds(process.pid)


def _result_span(topic: str, count: int, partitions: int) -> tuple[float, float]:
    consumer = Consumer(
        kafka(
            **{
                "group.id": unique("bench-reader-"),
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    seen, first, last = 0, float("inf"), 0.0
    deadline = time.monotonic() + 600
    while seen < count:
        assert time.monotonic() < deadline, f"only {seen} of {count} results"
        for msg in consumer.consume(10_000, timeout=0.5):
            if msg.error():
                continue
            seen += 1
            stamp = msg.timestamp()[1] / 1000
            first, last = min(first, stamp), max(last, stamp)
    consumer.close()
    return first, last


def run(mode: Mode, accounts_n: int = 1_000, processors: int = 1) -> tuple[list[Figure], list[str]]:
    accounts_n = min(accounts_n, mode.commands // 10)
    accounts = [f"bench-{uuid.uuid4().hex[:12]}" for _ in range(accounts_n)]
    partitions = mode.partitions
    raw = raw_produce(mode.commands, accounts, partitions)
    mine, cpu = ours(mode.commands, accounts, processors, partitions)
    figure = Figure(
        "command ingestion",
        "events/s",
        mine,
        raw,
        "confluent-kafka produce loop, same Avro events, linger 5 ms, no transactions",
        ">= 0.6x raw, >= 20k/s",
        mine >= 0.6 * raw and mine >= 20_000,
    )
    notes = [
        f"command ingestion: {mode.commands:,} commands ({accounts_n:,} OpenAccount, the rest "
        f"DepositMoney) over {partitions} partitions, {processors} processor process(es), timed from "
        f"the first committed result to the last; processor CPU from its assignment on "
        f"{cpu:.1f}s ({cpu / mode.commands * 1e6:.0f} us per command; its start-up is not counted)",
    ]
    return [figure], notes
