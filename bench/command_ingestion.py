"""Command ingestion: commands.<agg> -> command processor -> committed events, vs a raw produce loop.

Usage: python bench/command_ingestion.py [--commands N] [--accounts N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import bootstrap, unique, write
from schemas.codec import SingleObjectCodec
from schemas.keys import event_key, partition_for
from tests.support.kafka import Aggregate, CommandSender

PARTITIONS = 12
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


def raw_produce(count: int, accounts: list[str]) -> float:
    """The baseline: encode and produce the same events, best practice, no transactions."""
    topic = unique("bench.raw.")
    admin = AdminClient({"bootstrap.servers": bootstrap()})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result()
    producer = Producer(
        {
            "bootstrap.servers": bootstrap(),
            "linger.ms": 5,
            "batch.size": 1_000_000,
            "enable.idempotence": True,
            "compression.type": "none",
        }
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
                    partition=partition_for(account, PARTITIONS),
                )
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    producer.flush()
    elapsed = time.perf_counter() - began
    admin.delete_topics([topic])
    return count / elapsed


def ours(count: int, accounts: list[str], processors: int) -> tuple[float, float]:
    """Pre-load commands, then time the processor from its first result to its last."""
    topics = Aggregate.create(bootstrap(), uuid.uuid4().hex[:8], partitions=PARTITIONS)
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
    logs = Path(__file__).parent / "results"
    started = []
    for n in range(processors):
        with open(logs / f"processor-{n}.log", "wb") as log:
            started.append(
                subprocess.Popen(
                    [sys.executable, "-m", "producers.processor"],
                    env={**env, "PROCESSOR_INSTANCE_ID": f"bench-{n}"},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    try:
        first, last = _result_span(f"results.{aggregate}", count)
        cpu = sum(_cpu_seconds(p.pid) for p in started)
    finally:
        for process in started:
            process.terminate()
        for process in started:
            process.wait(30)
    return count / (last - first), cpu


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _result_span(topic: str, count: int) -> tuple[float, float]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap(),
            "group.id": unique("bench-reader-"),
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--commands", type=int, default=100_000)
    parser.add_argument("--accounts", type=int, default=1_000)
    parser.add_argument("--processors", type=int, default=1, help="command processor processes")
    args = parser.parse_args()
    (Path(__file__).parent / "results").mkdir(exist_ok=True)
    accounts = [f"bench-{uuid.uuid4().hex[:12]}" for _ in range(args.accounts)]
    raw = raw_produce(args.commands, accounts)
    mine, cpu = ours(args.commands, accounts, args.processors)
    write(
        "command_ingestion",
        [
            {
                "what": "raw confluent-kafka produce loop (same Avro events)",
                "events/s": f"{raw:,.0f}",
                "ratio": "1.00",
            },
            {
                "what": "ours: commands topic -> processor -> committed events",
                "events/s": f"{mine:,.0f}",
                "ratio": f"{mine / raw:.2f}",
            },
        ],
        [
            f"{args.commands:,} commands ({args.accounts:,} OpenAccount, the rest DepositMoney) over "
            f"{PARTITIONS} partitions; {args.processors} processor process(es); timed from the first "
            "committed result to the last "
            f"(processor CPU {cpu:.1f}s)",
            "same machine, same run; the broker, the bench and the processor share the 2 cores",
            "targets: >= 0.6x raw and >= 20k events/s",
        ],
    )


if __name__ == "__main__":
    main()
