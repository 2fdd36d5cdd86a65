"""The operator CLI against the real Kafka and Redis: offsets reset, dead-letter replay."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from confluent_kafka import Consumer, Producer

from schemas.codec import SingleObjectCodec
from schemas.kafka_security import kafka_config
from stream_processors.log_admin import LogAdmin
from tests.conftest import Stack
from tests.support.kafka import Aggregate
from tests.support.projection import EventLog, event

pytestmark = pytest.mark.integration


def cqrs(stack: Stack, *args: str, redis_url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap_servers,
        "REDIS_URL": redis_url or stack.redis_url,
        "COLUMNS": "250",  # rich tables unwrapped
    }
    cli = Path(sys.executable).with_name("cqrs")
    return subprocess.run([str(cli), *args], env=env, capture_output=True, text=True, timeout=120)


def test_offsets_reset_refuses_a_live_group_and_works_on_a_stopped_one(stack: Stack, unique: str) -> None:
    aggregate = Aggregate.create(stack.kafka_bootstrap_servers, unique, partitions=2)
    EventLog(aggregate).append(
        [
            ("AccountOpened", f"a{n}", {"owner_id": "o", "currency": "EUR", "overdraft_limit": 0})
            for n in range(20)
        ]
    )
    topic, group = f"events.{aggregate.name}", f"reader-{unique}"
    consumer = Consumer(
        {
            **kafka_config(stack.kafka_bootstrap_servers),
            "group.id": group,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    deadline = time.monotonic() + 30
    while not consumer.consume(100, timeout=0.5):  # joins the group, then reads
        assert time.monotonic() < deadline
    consumer.commit(asynchronous=False)

    refused = cqrs(stack, "offsets", "reset", "--group", group, "--to", "earliest")
    assert refused.returncode == 1
    assert "live member" in refused.stdout and "Stop them first" in refused.stdout

    consumer.close()  # leaves the group
    admin = LogAdmin(stack.kafka_bootstrap_servers)
    deadline = time.monotonic() + 30
    while admin.members(group):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    done = cqrs(stack, "offsets", "reset", "--group", group, "--to", "earliest")
    assert done.returncode == 0, done.stdout + done.stderr
    assert admin.committed(group, topic) == {p: low for p, (low, _) in admin.watermarks(topic).items()}

    explicit = cqrs(stack, "offsets", "reset", "--group", group, "--to", "0:3,1:2", "--topic", topic)
    assert explicit.returncode == 0, explicit.stdout
    assert admin.committed(group, topic) == {0: 3, 1: 2}
    latest = cqrs(
        stack, "offsets", "reset", "--group", group, "--to", "2000-01-01T00:00:00", "--topic", topic
    )
    assert latest.returncode == 0 and admin.committed(group, topic) == {0: 0, 1: 0}  # every event is later
    bad = cqrs(stack, "offsets", "reset", "--group", group, "--to", "7:1", "--topic", topic)
    assert bad.returncode == 1 and "no partition [7]" in bad.stdout


def test_a_dead_letter_redriven_after_its_cause_is_fixed_is_applied_exactly_once(
    stack: Stack, unique: str
) -> None:
    """A projector running older code dead-lettered a deposit it could not project (that is how
    the letter below was written: original bytes, error and source coordinates in headers).
    Today's code projects it: `dlq replay` applies it once, however often it runs; a letter
    that still fails is reported and stays."""
    aggregate = Aggregate.create(stack.kafka_bootstrap_servers, unique, partitions=1)
    # A Redis database of its own: a replayed deposit also moves the daily totals, which must not
    # leak into the shared view that other tests compare with a rebuild.
    url = f"{stack.redis_url.rsplit('/', 1)[0]}/6"
    client = redis.Redis.from_url(url)
    client.flushdb()
    view = "accounts"
    generation = 1
    client.set(f"view:{view}:current", generation)
    account = f"dlq-{unique}"
    key = f"view:{view}:g{generation}:account:{account}"
    client.hset(key, mapping={"account_id": account, "currency": "EUR", "balance": 100, "version": 1})
    codec = SingleObjectCodec()
    deposit = codec.encode(
        "MoneyDeposited",
        event("MoneyDeposited", account, 2, amount=25, reference=None, channel="test"),
    )
    producer = Producer(kafka_config(stack.kafka_bootstrap_servers))
    for value, offset, error in (
        (deposit, 41, "UnknownEventType: no rule"),
        (b"\x00garbage", 42, "CorruptBody"),
    ):
        producer.produce(
            f"deadletters.{aggregate.name}",
            key=f"events.{aggregate.name}:0:{offset}".encode(),
            value=value,
            partition=0,
            headers=[
                ("error", error.encode()),
                ("view", view.encode()),
                ("source.topic", f"events.{aggregate.name}".encode()),
                ("source.partition", b"0"),
                ("source.offset", str(offset).encode()),
            ],
        )
    producer.flush(10)

    listed = cqrs(stack, "dlq", "list", "--aggregate", aggregate.name)
    assert listed.returncode == 0 and "2 dead letter(s)" in listed.stdout, listed.stdout
    assert f"events.{aggregate.name}:0:41" in listed.stdout

    first = cqrs(stack, "dlq", "replay", "--view", view, "--aggregate", aggregate.name, redis_url=url)
    assert "1 applied, 0 already applied before, 1 still failing" in first.stdout, first.stdout
    assert first.returncode == 1  # the corrupt one still fails, and says so
    assert f"events.{aggregate.name}:0:42" in first.stdout
    again = cqrs(stack, "dlq", "replay", "--view", view, "--aggregate", aggregate.name, redis_url=url)
    assert "0 applied, 1 already applied before" in again.stdout, again.stdout

    assert int(client.hget(key, "balance")) == 125  # type: ignore[arg-type]
    entries = client.zrange(f"{key}:transactions", 0, -1)
    assert len(entries) == 1 and b'"balance_after":125' in entries[0]
    client.flushdb()
