"""The projector on the real Kafka and Redis: dead letters, kill -9 consistency, no re-application."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
import redis
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from schemas.codec import MAGIC
from schemas.kafka_security import kafka_config
from tests.conftest import Stack
from tests.support.kafka import Aggregate, read_topic
from tests.support.projection import (
    EventLog,
    ProjectorProcess,
    codec,
    deposits,
    digest,
    event,
    last_offsets,
    wait_caught_up,
)

pytestmark = pytest.mark.integration


def private_redis(stack: Stack, db: int) -> str:
    url = f"{stack.redis_url.rsplit('/', 1)[0]}/{db}"
    redis.Redis.from_url(url).flushdb()
    return url


def test_poison_events_go_to_the_dead_letters_and_the_rest_is_applied(
    stack: Stack, unique: str, tmp_path: Path
) -> None:
    aggregate = Aggregate.create(stack.kafka_bootstrap_servers, unique, partitions=3)
    url = private_redis(stack, 2)
    log = EventLog(aggregate)
    accounts = [f"d{unique}-{i}" for i in range(3)]
    log.append(deposits(accounts, 30))
    corrupt = MAGIC + b"\x00" * 8 + b"not avro at all"
    log.append_raw(accounts[0], f"{accounts[0]}:0000009999", corrupt)
    unknown = codec.encode(
        "TransferRequested",
        {
            **event("TransferRequested", f"t{unique}", 1),
            "from_account_id": accounts[0],
            "to_account_id": accounts[1],
            "amount": 5,
        },
    )
    log.append_raw(accounts[1], f"t{unique}:0000000001", unknown)
    log.append(deposits(accounts, 3 + 30)[3:])  # 30 more deposits after the poison

    projector = ProjectorProcess(aggregate, url, tmp_path).start()
    try:
        wait_caught_up(url, 1, last_offsets(aggregate))
    finally:
        projector.stop()

    letters = [
        msg for *_, msg in read_topic(aggregate.bootstrap, f"deadletters.{aggregate.name}", decode=False)
    ]
    assert sorted(m.value() for m in letters) == sorted([corrupt, unknown])
    sources = {}
    for *_, msg in read_topic(aggregate.bootstrap, f"events.{aggregate.name}", decode=False):
        sources[msg.value()] = (msg.partition(), msg.offset())
    for letter in letters:
        headers = {k: v.decode() for k, v in letter.headers()}
        assert (int(headers["source.partition"]), int(headers["source.offset"])) == sources[letter.value()]
        assert headers["source.topic"] == f"events.{aggregate.name}" and headers["view"] == "accounts"
        assert headers["error"]
    client = redis.Redis.from_url(url)
    balances = {a: int(client.hget(f"view:accounts:g1:account:{a}", "balance")) for a in accounts}  # type: ignore[arg-type]
    expected = {a: 0 for a in accounts}
    for _, account, payload in deposits(accounts, 30)[3:] + deposits(accounts, 33)[3:]:
        expected[account] += payload["amount"]
    assert balances == expected


def test_kill_9_ten_times_then_the_view_equals_a_clean_rebuild(
    stack: Stack, unique: str, tmp_path: Path
) -> None:
    aggregate = Aggregate.create(stack.kafka_bootstrap_servers, unique, partitions=6)
    url = private_redis(stack, 3)
    EventLog(aggregate).append(deposits([f"k{unique}-{i}" for i in range(500)], 50_000))
    ends = last_offsets(aggregate)

    rng = random.Random(5)
    client = redis.Redis.from_url(url)
    total = sum(o + 1 for o in ends.values())

    def progress() -> int:
        return sum(int(v) + 1 for v in client.hgetall("view:accounts:g1:checkpoints").values())

    projector = ProjectorProcess(aggregate, url, tmp_path, generation=1).start()
    mid_stream = 0
    try:
        for _ in range(10):
            seen, deadline = progress(), time.monotonic() + 60
            while progress() == seen and progress() < total and time.monotonic() < deadline:
                time.sleep(0.05)  # wait until this incarnation is projecting
            time.sleep(rng.uniform(0.0, 0.3))
            mid_stream += progress() < total
            projector.kill()
            projector.start()
        wait_caught_up(url, 1, ends)
    finally:
        projector.stop()
    assert mid_stream >= 8, f"only {mid_stream} of 10 kills landed while projecting"
    survived = digest(url, 1)

    rebuild = ProjectorProcess(aggregate, url, tmp_path, generation=2).start()
    try:
        wait_caught_up(url, 2, ends)
    finally:
        rebuild.stop()
    assert digest(url, 2) == survived
    assert survived[1] == 500 * 3 + 7 + 1  # summaries, transactions, change logs, owners, one day


def _hincrby_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return int(stats.get("cmdstat_hincrby", {}).get("calls", 0))


def test_a_restart_from_offset_zero_applies_nothing_twice(stack: Stack, unique: str, tmp_path: Path) -> None:
    aggregate = Aggregate.create(stack.kafka_bootstrap_servers, unique, partitions=3)
    url = private_redis(stack, 4)
    log = EventLog(aggregate)
    log.append(deposits([f"r{unique}-{i}" for i in range(50)], 2_000))
    ends = last_offsets(aggregate)
    calls_before = _hincrby_calls(redis.Redis.from_url(url))  # server-wide counter
    projector = ProjectorProcess(aggregate, url, tmp_path).start()
    try:
        wait_caught_up(url, 1, ends)
    finally:
        projector.stop()
    calls = _hincrby_calls(redis.Redis.from_url(url))

    group = f"projector.{aggregate.name}.accounts.g1"
    admin = AdminClient(kafka_config(aggregate.bootstrap))
    rewind = [TopicPartition(f"events.{aggregate.name}", p, 0) for p in range(aggregate.partitions)]
    admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, rewind)])[group].result()

    # Restarted on the rewound group, it reads on after its checkpoints: one new deposit is all it
    # applies (measured in HINCRBY calls per deposit, from the first run: 1,950 deposits).
    per_deposit, remainder = divmod(calls - calls_before, 2_000 - 50)
    assert per_deposit > 0 and remainder == 0, calls
    account = f"r{unique}-7"
    balance_key = f"view:accounts:g1:account:{account}"
    balance = int(redis.Redis.from_url(url).hget(balance_key, "balance"))  # type: ignore[arg-type]
    again = ProjectorProcess(aggregate, url, tmp_path).start()
    try:
        log.append([("MoneyDeposited", account, {"amount": 5, "reference": None, "channel": "t"})])
        wait_caught_up(url, 1, last_offsets(aggregate))
    finally:
        again.stop()
    client = redis.Redis.from_url(url)
    assert _hincrby_calls(client) == calls + per_deposit  # nothing of the old log applied twice
    assert int(client.hget(balance_key, "balance")) == balance + 5  # type: ignore[arg-type]
