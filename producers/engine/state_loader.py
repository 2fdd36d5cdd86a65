"""Rebuilds a processor's partitions on assignment: snapshots, then the events after the
partition checkpoint, then the results that form the idempotency window."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from producers.engine.aggregate import Aggregate
from producers.engine.batch import PartitionState
from producers.engine.handler import NOT_OUTCOMES, Stream
from producers.engine.idempotency import IdempotencyMemory
from producers.engine.wire import (
    CHECKPOINT_PREFIX,
    event_from_record,
    outcome_from_result,
    stream_from_snapshot,
)
from schemas.codec import Codec, CodecError
from schemas.kafka_security import kafka_config
from schemas.topics import events_topic, results_topic, snapshots_topic

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadStats:
    snapshots: int
    events: int
    results: int
    seconds: float


# A read of history that gets nothing for this long, short of the end it was given, is stuck (a
# read_committed read waits at most a transaction timeout for an open transaction): it is raised
# as a timeout, which the caller retries with a fresh consumer.
STALL_S = 60.0


def _watermarks(consumer: Consumer, tp: TopicPartition, within_s: float = 30) -> tuple[int, int]:
    """Watermarks, retried while the partition has no leader yet (right after creation, failover)."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            return low, high
        except KafkaException as exc:
            if not exc.args[0].retriable() and exc.args[0].code() != KafkaError.NOT_LEADER_FOR_PARTITION:
                raise
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


class StateLoader:
    def __init__(
        self,
        bootstrap: str,
        group_id: str,
        codec: Codec,
        aggregate: Aggregate,
        topics: str | None = None,
        memory: Callable[[], IdempotencyMemory] = IdempotencyMemory,
    ) -> None:
        self.bootstrap, self.group_id, self.codec, self.aggregate = bootstrap, group_id, codec, aggregate
        self.memory = memory  # a partition's empty idempotency memory (its window and limit)
        name = topics or aggregate.name
        self.events, self.results, self.snapshots = (
            events_topic(name),
            results_topic(name),
            snapshots_topic(name),
        )

    def _consumer(self) -> Consumer:
        return Consumer(
            {
                **kafka_config(self.bootstrap),
                "group.id": f"{self.group_id}.loader",  # never joins: partitions assigned by hand
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "fetch.max.bytes": 52428800,
            }
        )

    def load(self, partitions: list[int]) -> tuple[dict[int, PartitionState], LoadStats]:
        began = time.monotonic()
        states = {p: PartitionState(handled=self.memory()) for p in partitions}
        loader = self._consumer()
        counts = {"snapshots": 0, "events": 0, "results": 0}
        try:
            starts: dict[int, int] = {}
            for msg in self._read_all(loader, self.snapshots, {p: None for p in partitions}):
                counts["snapshots"] += 1
                self._snapshot(msg, states[msg.partition() or 0], starts)
            for msg in self._read_all(loader, self.results, {p: None for p in partitions}):
                counts["results"] += 1
                try:
                    record = self.codec.decode(msg.value() or b"").record
                except CodecError as exc:  # a result only serves idempotency: warn, go on
                    log.warning("unreadable result at %s@%s: %s", msg.partition(), msg.offset(), exc)
                    continue
                if record["reason"] in NOT_OUTCOMES:
                    continue  # answered a delivery, not the command (a later retry is decided afresh)
                states[msg.partition() or 0].handled.remember(
                    record["command_id"], outcome_from_result(record), msg.timestamp()[1] / 1000
                )
            from_offsets: dict[int, int | None] = {p: starts.get(p) for p in partitions}
            for msg in self._read_all(loader, self.events, from_offsets):
                counts["events"] += 1
                self._event(msg, states[msg.partition() or 0])
        finally:
            loader.close()
        return states, LoadStats(seconds=time.monotonic() - began, **counts)

    def _read_all(self, loader: Consumer, topic: str, starts: dict[int, int | None]) -> Iterator[Message]:
        """Every committed record of these partitions, from each start (or the beginning) to the end."""
        ends: dict[int, int] = {}
        assignment = []
        for p, start in starts.items():
            low, high = _watermarks(loader, TopicPartition(topic, p))
            begin = max(low, start) if start is not None else low
            if high > begin:
                ends[p] = high
                assignment.append(TopicPartition(topic, p, begin))
        if not assignment:
            return
        loader.assign(assignment)
        progress = time.monotonic()
        while ends:
            for msg in loader.consume(num_messages=5000, timeout=0.2):
                if msg.error():
                    raise KafkaException(msg.error())
                progress = time.monotonic()
                yield msg
            for tp in loader.position([TopicPartition(topic, p) for p in list(ends)]):
                if tp.offset >= ends[tp.partition]:
                    del ends[tp.partition]
                    progress = time.monotonic()
            if ends and time.monotonic() - progress > STALL_S:  # never a silent wait: retried
                raise KafkaException(KafkaError(
                    KafkaError._TIMED_OUT,
                    f"{topic} partitions {sorted(ends)}: no record for {STALL_S:.0f}s short of their end",
                ))  # fmt: skip
        loader.unassign()

    def _snapshot(self, msg: Message, state: PartitionState, starts: dict[int, int]) -> None:
        key = (msg.key() or b"").decode()
        if msg.value() is None:
            return
        record = self.codec.decode(msg.value() or b"").record
        if key.startswith(CHECKPOINT_PREFIX):
            starts[msg.partition() or 0] = record["events_offset"]
        else:
            state.streams[key] = stream_from_snapshot(self.aggregate, record)

    def _event(self, msg: Message, state: PartitionState) -> None:
        try:
            decoded = self.codec.decode(msg.value() or b"")
        except CodecError as exc:
            # Nothing but this service appends here; an undecodable event is a bug to see, and
            # skipping it would corrupt the state, so refuse to serve the partition.
            raise RuntimeError(
                f"undecodable event at {msg.topic()}[{msg.partition()}]@{msg.offset()}: {exc}"
            ) from exc
        record = decoded.record
        aggregate_id = record["aggregate_id"]
        stream = state.streams.setdefault(aggregate_id, Stream())
        if record["version"] <= stream.version:
            return  # already in the snapshot
        stream.apply(
            self.aggregate, event_from_record(self.aggregate, decoded.name, record), record["version"]
        )
        state.dirty.add(aggregate_id)
        state.events_since_checkpoint += 1
