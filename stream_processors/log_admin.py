"""Kafka-side operations on a view's source log and consumer groups: live members, committed
offsets, setting offsets (earliest, latest, a time, explicit), the last committed event per
partition, deleting a group. Used by the rebuild, the operator CLI and the projector's recovery."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

from schemas.kafka_security import kafka_config

T = TypeVar("T")
TIMEOUT_S = 15
_EARLIEST = OffsetSpec.earliest()  # type: ignore[no-untyped-call]
_LATEST = OffsetSpec.latest()  # type: ignore[no-untyped-call]


_SETTLING = {
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError._TIMED_OUT,
    # A topic created a moment ago: its leaders are not known to every part of the broker yet.
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
}


def retrying(call: Callable[[], T], timeout_s: float = 60) -> T:
    """Group operations fail while a fresh cluster creates __consumer_offsets or a coordinator
    moves, and offset lookups while a new topic's leaders settle; those errors are retried for a
    while, others raised at once."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return call()
        except KafkaException as exc:
            error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            if error is None or error.code() not in _SETTLING or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


class GroupHasMembers(Exception):
    """The group's offsets cannot change while it has live members."""


@dataclass(frozen=True)
class Member:
    client_id: str
    host: str


class LogAdmin:
    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.admin = AdminClient(kafka_config(bootstrap, log_level=3))

    def partitions(self, topic: str) -> list[int]:
        metadata = self.admin.list_topics(topic, timeout=TIMEOUT_S).topics.get(topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            raise ValueError(f"no topic {topic}")
        return sorted(metadata.partitions)

    def members(self, group: str) -> list[Member]:
        def describe() -> list[Member]:
            [future] = self.admin.describe_consumer_groups([group], request_timeout=TIMEOUT_S).values()
            description: Any = future.result()
            return [Member(m.client_id, m.host) for m in description.members]

        return retrying(describe)

    def committed(self, group: str, topic: str) -> dict[int, int]:
        """The group's committed offset per partition of the topic (partitions never committed: absent)."""
        request = [
            ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in self.partitions(topic)])
        ]

        def committed() -> dict[int, int]:
            [future] = self.admin.list_consumer_group_offsets(request, request_timeout=TIMEOUT_S).values()
            return {tp.partition: tp.offset for tp in future.result().topic_partitions if tp.offset >= 0}

        return retrying(committed)

    def groups(self, prefix: str) -> list[str]:
        """Consumer groups whose id starts with the prefix."""
        valid = retrying(lambda: self.admin.list_consumer_groups(request_timeout=TIMEOUT_S).result().valid)
        return sorted(g.group_id for g in valid if g.group_id.startswith(prefix))

    def topics_of(self, group: str) -> list[str]:
        """The topics a group has committed offsets for."""

        def topics() -> list[str]:
            [future] = self.admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group)], request_timeout=TIMEOUT_S
            ).values()
            return sorted({tp.topic for tp in future.result().topic_partitions})

        return retrying(topics)

    def watermarks(self, topic: str) -> dict[int, tuple[int, int]]:
        """(low, end) per partition; the end is the last stable offset (nothing after it is committed)."""
        partitions = self.partitions(topic)
        earliest = self._list_offsets(topic, partitions, _EARLIEST)
        latest = self._list_offsets(topic, partitions, _LATEST)
        return {p: (earliest[p], latest[p]) for p in partitions}

    def earliest(self, topic: str) -> dict[int, int]:
        return {p: low for p, (low, _) in self.watermarks(topic).items()}

    def offsets_for_time(self, topic: str, moment: datetime) -> dict[int, int]:
        """Per partition, the first offset at or after the moment (the end when there is none)."""
        partitions = self.partitions(topic)
        at = self._list_offsets(topic, partitions, OffsetSpec.for_timestamp(int(moment.timestamp() * 1000)))
        latest = self._list_offsets(topic, partitions, _LATEST)
        return {p: at[p] if at[p] >= 0 else latest[p] for p in partitions}

    def _list_offsets(self, topic: str, partitions: list[int], spec: OffsetSpec) -> dict[int, int]:
        def list_offsets() -> dict[int, int]:
            futures = self.admin.list_offsets(
                {TopicPartition(topic, p): spec for p in partitions},
                isolation_level=IsolationLevel.READ_COMMITTED,
                request_timeout=TIMEOUT_S,
            )
            return {tp.partition: future.result().offset for tp, future in futures.items()}

        return retrying(list_offsets)

    def set_offsets(self, group: str, topic: str, offsets: Mapping[int, int]) -> None:
        """Commits these offsets for the group; refuses while the group has live members."""
        members = self.members(group)
        if members:
            names = ", ".join(f"{m.client_id}@{m.host}" for m in members)
            raise GroupHasMembers(
                f"group {group} has {len(members)} live member(s): {names}. Stop them first "
                "(`cqrs stack down` stops the local services; a projector leaves its group on SIGTERM), "
                "then run this again."
            )
        request = [
            ConsumerGroupTopicPartitions(
                group, [TopicPartition(topic, p, o) for p, o in sorted(offsets.items())]
            )
        ]

        def alter() -> None:
            [future] = self.admin.alter_consumer_group_offsets(request, request_timeout=TIMEOUT_S).values()
            future.result()

        retrying(alter)

    def delete_group(self, group: str) -> None:
        def delete() -> None:
            [future] = self.admin.delete_consumer_groups([group], request_timeout=TIMEOUT_S).values()
            future.result()

        retrying(delete)

    def last_event_offsets(self, topic: str) -> dict[int, int]:
        """The offset of the last committed record per partition (-1 when there is none), read with
        read_committed: transaction markers and aborted records occupy offsets but are not events,
        so the high watermark alone cannot say when a view has applied everything."""
        marks = self.watermarks(topic)
        consumer = Consumer(
            {
                **kafka_config(self.bootstrap),
                "group.id": "unused",  # assign() only; nothing is committed
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "log_level": 3,
            }
        )
        last = {p: -1 for p in marks}
        try:
            for partition, (low, high) in marks.items():
                window = 64
                while high > low and last[partition] < 0:
                    start = max(low, high - window)
                    last[partition] = self._last_in(consumer, topic, partition, start, high)
                    if start == low:
                        break
                    window *= 8
        finally:
            consumer.close()
        return last

    @staticmethod
    def _last_in(consumer: Consumer, topic: str, partition: int, start: int, end: int) -> int:
        consumer.assign([TopicPartition(topic, partition, start if start > 0 else OFFSET_BEGINNING)])
        last, deadline = -1, time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            for message in consumer.consume(500, timeout=0.1):
                offset = message.offset()
                if message.error() is None and offset is not None:
                    last = max(last, offset)
            # Markers and aborted records move the position without yielding a message.
            if consumer.position([TopicPartition(topic, partition)])[0].offset >= end:
                break
        return last
