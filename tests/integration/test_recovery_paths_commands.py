"""Recovery paths of the command side on the real Kafka: a state loaded from snapshots equals a full
replay, and one batch full of bad deliveries (unknown fingerprint, a record that is not a command,
a wrong key, a wrong partition, the same command id twice) is answered command by command,
applies each command once, and the processor goes on."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Message, Producer

from producers.aggregates import aggregate as aggregate_named
from producers.engine.batch import PartitionState
from producers.engine.state_loader import StateLoader
from producers.engine.wire import CHECKPOINT_PREFIX
from schemas.codec import MAGIC, SingleObjectCodec
from schemas.kafka_security import kafka_config
from schemas.keys import partition_for
from tests.conftest import Stack
from tests.integration.test_command_answers import command, results_by_id
from tests.support.kafka import Aggregate, CommandSender, Processor, read_topic, wait_for_results

pytestmark = pytest.mark.integration
codec = SingleObjectCodec()
ACCOUNT = aggregate_named("account")


class FullReplay(StateLoader):
    """The processor's loader, blind to the snapshots topic: every event from the start."""

    def _read_all(self, loader: Consumer, topic: str, starts: dict[int, int | None]) -> Iterator[Message]:
        if topic == self.snapshots:
            return iter(())
        return super()._read_all(loader, topic, starts)


def ids_on(aggregate: Aggregate, prefix: str, per_partition: int = 1) -> dict[int, list[str]]:
    """Aggregate ids that hash to each partition."""
    found: dict[int, list[str]] = {p: [] for p in range(aggregate.partitions)}
    n = 0
    while any(len(ids) < per_partition for ids in found.values()):
        candidate = f"{prefix}-{n}"
        ids = found[partition_for(candidate, aggregate.partitions)]
        if len(ids) < per_partition:
            ids.append(candidate)
        n += 1
    return found


def streams(states: dict[int, PartitionState]) -> dict[str, tuple[Any, int]]:
    return {i: (s.state, s.version) for state in states.values() for i, s in state.streams.items()}


def start_processor(aggregate: Aggregate, instance: str, log_dir: Path, **env: str) -> Processor:
    processor = Processor(aggregate, instance, log_dir)
    processor.spawn("producers.processor", {**aggregate.env(instance), **env})
    processor.wait_assigned()
    return processor


def test_a_state_loaded_from_snapshots_equals_a_full_replay(
    stack: Stack, unique: str, tmp_path: Path
) -> None:
    aggregate = Aggregate.create(stack.kafka_bootstrap_servers, unique, partitions=2)
    processor = start_processor(aggregate, f"snap-{unique}", tmp_path, PROCESSOR_SNAPSHOT_EVERY="4")
    sender = CommandSender(aggregate)
    on = ids_on(aggregate, f"sn{unique}", 2)
    accounts = [on[0][0], on[1][0], on[0][1], on[1][1]]  # the first two also overdraw
    try:
        # In rounds, each answered before the next, so that snapshots are also taken in batches
        # that change aggregates known from earlier ones.
        opening = {"owner_id": "o", "currency": "EUR", "overdraft_limit": 0}
        rounds: list[list[tuple[str, str, dict[str, Any]]]] = [
            [("OpenAccount", a, opening) for a in accounts],
            *([("DepositMoney", a, {"amount": 10 + n, "reference": None, "channel": "t"})
               for n in part for a in accounts] for part in (range(3), range(3, 6))),
            [c for a in accounts[:2] for c in (("ChangeOverdraftLimit", a, {"overdraft_limit": 50}),
                                                ("WithdrawMoney", a, {"amount": 100, "reference": None}))],
        ]  # fmt: skip
        for commands in rounds:
            sent = {sender.send(name, a, payload) for name, a, payload in commands}
            sender.flush()
            wait_for_results(aggregate.bootstrap, aggregate, sent, within_s=60)

        # Each partition gets events after its latest checkpoint, so the loader joins both parts.
        checkpoints, events = checkpoint_offsets(aggregate), event_offsets(aggregate)
        assert set(checkpoints) == {0, 1}, "every partition has a checkpoint"
        extra = [p for p in checkpoints if not [o for o in events[p] if o >= checkpoints[p]]]
        topped_up, topped = set(), dict.fromkeys(accounts, 0)
        for p in extra:  # one deposit on an account of the partition: fewer than PROCESSOR_SNAPSHOT_EVERY
            account = next(a for a in accounts if partition_for(a, aggregate.partitions) == p)
            topped_up.add(
                sender.send("DepositMoney", account, {"amount": 1, "reference": None, "channel": "t"})
            )
            topped[account] += 1
        sender.flush()
        wait_for_results(aggregate.bootstrap, aggregate, topped_up, within_s=30)
    finally:
        processor.stop()

    snapshot_records = list(read_topic(aggregate.bootstrap, f"snapshots.{aggregate.name}", decode=False))
    checkpoints, events = checkpoint_offsets(aggregate), event_offsets(aggregate)
    after = sum(len([o for o in events[p] if o >= checkpoints[p]]) for p in events)
    total = sum(len(offsets) for offsets in events.values())
    assert total == 4 * 7 + 2 * 2 + len(topped_up) and 0 < after < total

    partitions = list(range(aggregate.partitions))
    group = f"command-processor.{aggregate.name}"
    states, stats = StateLoader(aggregate.bootstrap, group, codec, ACCOUNT, aggregate.name).load(partitions)
    assert stats.snapshots == len(snapshot_records) > 0
    assert stats.events == after, "only the events after each partition's checkpoint are read"
    replayed, replay_stats = FullReplay(aggregate.bootstrap, group, codec, ACCOUNT, aggregate.name).load(
        partitions
    )
    assert (replay_stats.snapshots, replay_stats.events) == (0, total)
    assert streams(states) == streams(replayed)
    want = {a: (9 if a in accounts[:2] else 7) + topped[a] for a in accounts}
    assert {a: streams(states)[a][1] for a in accounts} == want
    balance = {a: 75 - (100 if a in accounts[:2] else 0) + topped[a] for a in accounts}
    assert {a: streams(states)[a][0].balance for a in accounts} == balance


def checkpoint_offsets(aggregate: Aggregate) -> dict[int, int]:
    """The latest partition checkpoint (events_offset) per partition of the snapshots topic."""
    found = {}
    for partition, _, key, record in read_topic(aggregate.bootstrap, f"snapshots.{aggregate.name}"):
        if (key or b"").decode().startswith(CHECKPOINT_PREFIX):
            found[partition] = record["events_offset"]
    return found


def event_offsets(aggregate: Aggregate) -> dict[int, list[int]]:
    found: dict[int, list[int]] = {p: [] for p in range(aggregate.partitions)}
    for partition, offset, _, _ in read_topic(aggregate.bootstrap, f"events.{aggregate.name}", decode=False):
        found[partition].append(offset)
    return found


def test_one_batch_of_bad_deliveries_is_answered_one_by_one_and_applied_once(
    stack: Stack, unique: str, tmp_path: Path
) -> None:
    aggregate = Aggregate.create(stack.kafka_bootstrap_servers, unique, partitions=3)
    (account, *_), (other, *_), _ = ids_on(aggregate, f"bd{unique}").values()
    home, elsewhere = partition_for(account, 3), partition_for(other, 3)
    ids = {
        name: str(uuid.uuid4()) for name in ("open", "twice", "fingerprint", "event", "key", "keyed", "both")
    }

    def deposit(command_id: str, amount: int) -> bytes:
        return codec.encode(
            "DepositMoney", command(account, command_id, amount=amount, reference=None, channel="t")
        )

    unknown = deposit(ids["fingerprint"], 1)
    unknown = MAGIC + uuid.uuid4().bytes[:8] + unknown[len(MAGIC) + 8 :]  # a valid body, no known schema
    not_a_command = codec.encode(
        "MoneyDeposited",
        {**command(account, ids["event"]), "event_id": ids["event"], "aggregate_type": "account",
         "version": 2, "event_type": "MoneyDeposited", "occurred_at": datetime.now(UTC),
         "causation_id": ids["event"], "amount": 1, "reference": None, "channel": "t"},
    )  # fmt: skip
    # (command id, key, partition, value) in the order the commands partition of the account reads
    # them; every one is in the log before the processor starts, so they form one batch.
    frames = [
        (ids["open"], account, home, codec.encode(
            "OpenAccount", command(account, ids["open"], owner_id="o", currency="EUR", overdraft_limit=0))),
        (ids["twice"], account, home, deposit(ids["twice"], 5)),
        (ids["twice"], account, home, deposit(ids["twice"], 5)),  # the same command again
        (ids["fingerprint"], account, home, unknown),
        (ids["event"], account, home, not_a_command),
        (ids["key"], other, home, deposit(ids["key"], 11)),  # keyed by another aggregate
        (ids["keyed"], other, elsewhere, deposit(ids["keyed"], 13)),  # ... and partitioned by it
        (ids["both"], account, elsewhere, deposit(ids["both"], 17)),  # one copy misrouted,
        (ids["both"], account, home, deposit(ids["both"], 17)),  # one where it belongs
    ]  # fmt: skip
    raw = Producer(kafka_config(aggregate.bootstrap, {"enable.idempotence": True}))
    for command_id, key, partition, value in frames:
        raw.produce(f"commands.{aggregate.name}", key=key, value=value, partition=partition,
                    headers=[("command_id", command_id.encode())])  # fmt: skip
    assert raw.flush(10) == 0

    processor = start_processor(aggregate, f"bad-{unique}", tmp_path)
    try:
        found = answers(aggregate, ids, {"twice": 2, "both": 2})
        assert processor.process is not None and processor.process.poll() is None, "the processor goes on"
        sender = CommandSender(aggregate)
        later = sender.send("DepositMoney", account, {"amount": 19, "reference": None, "channel": "t"})
        sender.flush()
        ((_, after),) = results_by_id(aggregate, {later})[later]
    finally:
        processor.stop()
    assert "Traceback" not in processor.log.read_text()
    assert (after["status"], after["version"]) == ("ACCEPTED", 5)

    def outcome(name: str, n: int = 0) -> tuple[int, str, int, str | None]:
        partition, result = found[ids[name]][n]
        return partition, result["status"], result["version"], result["reason"]

    assert outcome("open") == (home, "ACCEPTED", 1, None)
    assert outcome("twice", 0) == outcome("twice", 1) == (home, "ACCEPTED", 2, None)
    assert found[ids["twice"]][0][1]["position"] == found[ids["twice"]][1][1]["position"]
    assert outcome("fingerprint") == (home, "REJECTED", 2, "malformed_command")
    assert "fingerprint" in found[ids["fingerprint"]][0][1]["detail"]
    assert outcome("event") == (home, "REJECTED", 2, "malformed_command")
    assert "is not a command of account" in found[ids["event"]][0][1]["detail"]
    assert outcome("key") == (home, "ACCEPTED", 3, None)  # the value names the aggregate, not the key
    assert outcome("keyed") == (home, "REJECTED", 4, "wrong_partition")
    assert f"sent to partition {elsewhere}" in found[ids["keyed"]][0][1]["detail"]
    assert [outcome("both", 0), outcome("both", 1)] == [
        (home, "ACCEPTED", 4, None), (home, "REJECTED", 4, "wrong_partition")
    ]  # fmt: skip
    assert all(
        len(found[command_id]) == 1 for name, command_id in ids.items() if name not in ("twice", "both")
    )

    events = [e for *_, e in read_topic(aggregate.bootstrap, f"events.{aggregate.name}")]
    assert {e["aggregate_id"] for e in events} == {account}, "nothing happened to the key's aggregate"
    assert [(e["version"], e.get("amount"), e["command_id"]) for e in events] == [
        (1, None, ids["open"]), (2, 5, ids["twice"]), (3, 11, ids["key"]), (4, 17, ids["both"]),
        (5, 19, later),
    ]  # fmt: skip


def answers(aggregate: Aggregate, ids: dict[str, str], expected: dict[str, int]) -> dict[str, Any]:
    """Results per command id once every id has one, and the named ones as many as expected."""
    deadline = time.monotonic() + 60
    while True:
        found = results_by_id(aggregate, set(ids.values()), within_s=60)
        if all(len(found[ids[name]]) >= count for name, count in expected.items()):
            return found
        assert time.monotonic() < deadline, found
        time.sleep(0.5)
