"""The command processor: owns partitions of commands.<aggregate>, decides, appends transactionally."""

from __future__ import annotations

import logging
import signal
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from producers.handler import (
    Accepted,
    AlreadyHandled,
    CommandEnvelope,
    Handled,
    Rejected,
    Stream,
    handle,
)
from producers.settings import ProcessorSettings
from producers.wire import command_from_record, event_from_record, event_to_record
from schemas.codec import Codec, CodecError, SingleObjectCodec
from schemas.keys import event_key, partition_for
from schemas.positions import Position
from schemas.topics import commands_topic, events_topic, results_topic

log = logging.getLogger(__name__)


class TopicLayoutError(RuntimeError):
    """The topics are missing or not co-partitioned."""


@dataclass
class _Pending:
    """One command's outcome, waiting for the offsets of its events before the result is sent."""

    envelope: CommandEnvelope
    partition: int
    status: str
    version: int
    stream: Stream | None = None  # accepted: its handled map gives the position after delivery
    reason: str | None = None
    detail: str | None = None

    @property
    def position(self) -> str | None:
        if self.stream is None:
            return None
        return self.stream.handled[self.envelope.command_id].position


def _now() -> datetime:
    return datetime.now(UTC)


class CommandProcessor:
    """Single writer per partition: Kafka's group assignment is the lock, transactions the append."""

    def __init__(self, settings: ProcessorSettings, codec: Codec | None = None) -> None:
        self.settings = settings
        self.codec = codec or SingleObjectCodec()
        self.commands = commands_topic(settings.aggregate)
        self.events = events_topic(settings.aggregate)
        self.results = results_topic(settings.aggregate)
        base = {"bootstrap.servers": settings.kafka_bootstrap_servers}
        self.consumer = Consumer(
            {
                **base,
                "group.id": settings.processor_group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
            }
        )
        self.producer = Producer(
            {
                **base,
                "transactional.id": f"{settings.processor_group_id}.{settings.processor_instance_id}",
                "transaction.timeout.ms": settings.processor_transaction_timeout_ms,
                "linger.ms": 2,
            }
        )
        self.partitions = self._check_topic_layout()
        self.streams: dict[str, Stream] = {}
        self.stop_requested = threading.Event()

    def _check_topic_layout(self) -> int:
        metadata = self.consumer.list_topics(timeout=10)
        counts = {}
        for name in (self.commands, self.events, self.results):
            topic = metadata.topics.get(name)
            if topic is None or topic.error is not None:
                raise TopicLayoutError(f"topic {name} does not exist: run `cqrs topics create`")
            counts[name] = len(topic.partitions)
        if len(set(counts.values())) != 1:
            raise TopicLayoutError(f"topics are not co-partitioned: {counts}")
        return counts[self.commands]

    # -- partition ownership -------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Waits for any transaction of the previous owner to settle (the offset fetch of a
        # read_committed consumer requires stable offsets), then loads the partitions' history.
        consumer.committed(partitions, timeout=30)
        numbers = [tp.partition for tp in partitions]
        self._load(numbers)
        log.info("assigned partitions %s; %d aggregates in memory", numbers, len(self.streams))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        gone = {tp.partition for tp in partitions}
        self.streams = {
            aggregate_id: stream
            for aggregate_id, stream in self.streams.items()
            if partition_for(aggregate_id, self.partitions) not in gone
        }
        log.info("revoked partitions %s", sorted(gone))

    def _load(self, partitions: list[int]) -> None:
        """Rebuild every aggregate of these partitions from the committed events."""
        loader = Consumer(
            {
                "bootstrap.servers": self.settings.kafka_bootstrap_servers,
                "group.id": f"{self.settings.processor_group_id}.loader",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
        try:
            ends: dict[int, int] = {}
            starts = []
            for p in partitions:
                low, high = loader.get_watermark_offsets(TopicPartition(self.events, p), timeout=10)
                if high > low:
                    ends[p] = high
                    starts.append(TopicPartition(self.events, p, low))
            if not starts:
                return
            loader.assign(starts)
            while ends:
                for msg in loader.consume(num_messages=1000, timeout=0.5):
                    if msg.error():
                        raise KafkaException(msg.error())
                    self._replay(msg)
                for tp in loader.position([TopicPartition(self.events, p) for p in list(ends)]):
                    if tp.offset >= ends[tp.partition]:
                        del ends[tp.partition]
        finally:
            loader.close()

    def _replay(self, msg: Message) -> None:
        decoded = self.codec.decode(msg.value() or b"")
        record = decoded.record
        stream = self.streams.setdefault(record["aggregate_id"], Stream())
        stream.apply(
            event_from_record(decoded.name, record),
            record["version"],
            record["command_id"],
            Position(msg.partition() or 0, msg.offset() or 0).token(),
        )

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> None:
        self.producer.init_transactions()
        self.consumer.subscribe(
            [self.commands],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )
        try:
            while not self.stop_requested.is_set():
                messages = self.consumer.consume(
                    num_messages=self.settings.processor_max_batch,
                    timeout=self.settings.processor_poll_timeout_s,
                )
                if messages:
                    self.process(messages)
        finally:
            # No transaction is open here: process() always commits or aborts before returning.
            self.consumer.close()  # leaves the group so the partitions move at once
            self.producer.flush(10)
            log.info("command processor stopped")

    def process(self, messages: list[Message]) -> None:
        """Handle a batch of commands in one transaction: events, results and offsets together."""
        working: dict[str, Stream] = {}
        pending: list[_Pending] = []
        first_offsets: dict[int, int] = {}
        next_offsets: dict[int, int] = {}
        self.producer.begin_transaction()
        try:
            for msg in messages:
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(err)
                partition, offset = msg.partition() or 0, msg.offset() or 0
                first_offsets.setdefault(partition, offset)
                next_offsets[partition] = offset + 1
                outcome = self._handle(msg, working)
                if outcome is not None:
                    pending.append(outcome)
            self.producer.flush()
            for outcome in pending:
                self._send_result(outcome)
            self.producer.send_offsets_to_transaction(
                [TopicPartition(self.commands, p, o) for p, o in next_offsets.items()],
                self.consumer.consumer_group_metadata(),
            )
            self.producer.commit_transaction()
        except KafkaException as exc:
            error = exc.args[0]
            if isinstance(error, KafkaError) and error.txn_requires_abort():
                log.warning("transaction aborted (%s); the batch will be retried", error)
                self.producer.abort_transaction()
                self._rewind(first_offsets)
                return
            raise
        self.streams.update(working)

    def _rewind(self, first_offsets: dict[int, int]) -> None:
        owned = {tp.partition for tp in self.consumer.assignment()}
        for partition, offset in first_offsets.items():
            if partition in owned:
                self.consumer.seek(TopicPartition(self.commands, partition, offset))

    def _handle(self, msg: Message, working: dict[str, Stream]) -> _Pending | None:
        try:
            decoded = self.codec.decode(msg.value() or b"")
            envelope, command = command_from_record(decoded.name, decoded.record)
        except (CodecError, ValueError, KeyError, TypeError) as exc:
            log.error(
                "undecodable command at %s[%s]@%s skipped: %s",
                msg.topic(),
                msg.partition(),
                msg.offset(),
                exc,
            )
            return None
        partition = msg.partition() or 0
        if partition_for(envelope.aggregate_id, self.partitions) != partition:
            return _Pending(
                envelope,
                partition,
                "REJECTED",
                0,
                reason="wrong_partition",
                detail="command was produced to a partition other than murmur2(aggregate_id)",
            )
        stream = working.get(envelope.aggregate_id)
        if stream is None:
            stream = self.streams.get(envelope.aggregate_id, Stream()).copy()
            working[envelope.aggregate_id] = stream
        decision = handle(stream, envelope, command)
        match decision:
            case AlreadyHandled(previous):
                return _Pending(envelope, partition, "ACCEPTED", previous.version, stream)
            case Rejected(reason, detail, version):
                return _Pending(envelope, partition, "REJECTED", version, reason=reason, detail=detail)
            case Accepted(events, first_version):
                occurred_at = _now()
                last_version = first_version + len(events) - 1
                for version, event in enumerate(events, start=first_version):
                    name, record = event_to_record(
                        event,
                        event_id=str(uuid.uuid4()),
                        aggregate_id=envelope.aggregate_id,
                        version=version,
                        occurred_at=occurred_at,
                        command=envelope,
                    )
                    # Applied now so the next command of this batch sees it; the position
                    # is filled in when the broker acknowledges the last event.
                    stream.apply(event, version, envelope.command_id, position="")
                    self.producer.produce(
                        self.events,
                        key=event_key(envelope.aggregate_id, version),
                        value=self.codec.encode(name, record),
                        partition=partition,
                        on_delivery=(
                            self._delivered(stream, envelope.command_id, version)
                            if version == last_version
                            else self._check_delivery
                        ),
                    )
                return _Pending(envelope, partition, "ACCEPTED", last_version, stream)
        raise AssertionError(decision)

    @staticmethod
    def _check_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            raise KafkaException(err)

    @staticmethod
    def _delivered(stream: Stream, command_id: str, version: int) -> Any:
        def callback(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                raise KafkaException(err)
            position = Position(msg.partition() or 0, msg.offset() or 0).token()
            if command_id in stream.handled:
                stream.handled[command_id] = Handled(version, position)

        return callback

    def _send_result(self, outcome: _Pending) -> None:
        record = {
            "command_id": outcome.envelope.command_id,
            "aggregate_id": outcome.envelope.aggregate_id,
            "correlation_id": outcome.envelope.correlation_id,
            "status": outcome.status,
            "version": outcome.version,
            "position": outcome.position,
            "reason": outcome.reason,
            "detail": outcome.detail,
            "completed_at": _now(),
        }
        self.producer.produce(
            self.results,
            key=outcome.envelope.command_id,
            value=self.codec.encode("CommandResult", record),
            partition=outcome.partition,
        )


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    processor = CommandProcessor(ProcessorSettings())
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: processor.stop_requested.set())
    processor.run()


if __name__ == "__main__":
    main()
