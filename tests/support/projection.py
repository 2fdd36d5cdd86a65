"""Test helpers for projectors: write an event log directly, run projectors as processes, digest views."""

from __future__ import annotations

import os
import socket
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis
from confluent_kafka import Producer

from schemas.codec import SingleObjectCodec
from schemas.kafka_security import kafka_config
from schemas.keys import event_key, partition_for
from stream_processors.generations import Generations
from tests.support.kafka import Aggregate, ChildProcess, read_topic

codec = SingleObjectCodec()
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def event(
    name: str, account: str, version: int, aggregate_type: str = "account", **payload: Any
) -> dict[str, Any]:
    command_id = f"cmd-{account}-{version}"
    return {
        "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, command_id)),
        "aggregate_type": aggregate_type,
        "aggregate_id": account,
        "version": version,
        "event_type": name,
        "occurred_at": EPOCH + timedelta(seconds=version),
        "command_id": command_id,
        "correlation_id": command_id,
        "causation_id": command_id,
        **payload,
    }


class EventLog:
    """Appends events (or raw bytes) to events.<aggregate> in transactions, as the command side does."""

    def __init__(self, aggregate: Aggregate, aggregate_type: str = "account") -> None:
        self.aggregate, self.aggregate_type = aggregate, aggregate_type
        self.producer = Producer(
            {
                **kafka_config(aggregate.bootstrap),
                "linger.ms": 20,
                "transactional.id": f"test-log-{uuid.uuid4()}",
            }
        )
        self.producer.init_transactions()
        self.versions: dict[str, int] = {}

    def append(self, records: list[tuple[str, str, dict[str, Any]]], per_transaction: int = 2000) -> None:
        for start in range(0, len(records), per_transaction):
            self.producer.begin_transaction()
            for name, account, payload in records[start : start + per_transaction]:
                version = self.versions[account] = self.versions.get(account, 0) + 1
                value = codec.encode(name, event(name, account, version, self.aggregate_type, **payload))
                self._produce(account, event_key(account, version), value)
            self.producer.commit_transaction()

    def append_raw(self, account: str, key: str, value: bytes) -> None:
        self.producer.begin_transaction()
        self._produce(account, key, value)
        self.producer.commit_transaction()

    def _produce(self, account: str, key: str, value: bytes) -> None:
        while True:
            try:
                self.producer.produce(
                    f"events.{self.aggregate.name}",
                    key=key,
                    value=value,
                    partition=partition_for(account, self.aggregate.partitions),
                )
                return
            except BufferError:
                self.producer.poll(0.05)


def deposits(accounts: list[str], count: int) -> list[tuple[str, str, dict[str, Any]]]:
    opened = [
        ("AccountOpened", a, {"owner_id": f"owner-{i % 7}", "currency": "EUR", "overdraft_limit": 0})
        for i, a in enumerate(accounts)
    ]
    moves = [
        (
            "MoneyDeposited",
            accounts[n % len(accounts)],
            {"amount": 1 + n % 97, "reference": None, "channel": "test"},
        )
        for n in range(count - len(accounts))
    ]
    return opened + moves


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ProjectorProcess(ChildProcess):
    """A projector of `events.<aggregate>` pinned to a generation, or (generation=None) following
    the current one, building the first from the log as a deployed projector does."""

    def __init__(
        self,
        aggregate: Aggregate,
        redis_url: str,
        log_dir: Path,
        generation: int | None = 1,
        env: dict[str, str] | None = None,
    ) -> None:
        self.aggregate, self.redis_url, self.generation = aggregate, redis_url, generation
        self.log = log_dir / f"projector-g{generation or 'current'}.log"
        self.metrics_port = free_port()
        self.env = env or {}
        self.process = None

    def start(self) -> ProjectorProcess:
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.aggregate.bootstrap,
            "AGGREGATE": self.aggregate.name,
            "REDIS_URL": self.redis_url,
            "PROJECTOR_SESSION_TIMEOUT_S": "6",  # the broker's minimum: a killed member leaves fast
            "PROJECTOR_METRICS_PORT": str(self.metrics_port),
            **self.env,
        }
        if self.generation is not None:
            env["PROJECTOR_GENERATION"] = str(self.generation)
        self.spawn("stream_processors.app", env)
        return self


def last_offsets(aggregate: Aggregate) -> dict[int, int]:
    """The offset of the last record per partition of events.<aggregate>."""
    last: dict[int, int] = {}
    for partition, offset, _, _ in read_topic(aggregate.bootstrap, f"events.{aggregate.name}", decode=False):
        last[partition] = max(last.get(partition, -1), offset)
    return last


def wait_caught_up(
    redis_url: str, generation: int, expected: dict[int, int], within_s: float = 180, view: str = "accounts"
) -> None:
    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + within_s
    while True:
        raw = client.hgetall(f"view:{view}:g{generation}:checkpoints")
        done = {int(k): int(v) for k, v in raw.items()}
        if all(done.get(p, -1) >= o for p, o in expected.items()):
            return
        assert time.monotonic() < deadline, f"checkpoints {done} never reached {expected}"
        time.sleep(0.2)


def digest(redis_url: str, generation: int, view: str = "accounts") -> tuple[str, int]:
    """sha256 over every data key of a view generation (bookkeeping left out), and the key count."""
    return Generations(redis.Redis.from_url(redis_url), view).digest(generation)
