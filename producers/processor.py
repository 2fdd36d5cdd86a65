"""The command processor: owns partitions of commands.<aggregate>, decides, appends transactionally."""

from __future__ import annotations

import logging
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from producers.batches import next_batch
from producers.handler import (
    Accepted,
    AlreadyHandled,
    CommandEnvelope,
    Outcome,
    Rejected,
    Stream,
    handle,
    request_hash,
)
from producers.settings import ProcessorSettings
from producers.state_loader import PartitionState, StateLoader
from producers.wire import (
    CHECKPOINT_PREFIX,
    UnknownMessageType,
    command_from_record,
    event_to_record,
    rejection_reasons,
    snapshot_to_record,
)
from schemas.codec import Codec, CodecError
from schemas.headers import COMMAND_ID_HEADER, MISROUTED_FROM_HEADER
from schemas.keys import event_key, partition_for
from schemas.positions import Position
from schemas.schema_log import codec_reading_the_log, header
from schemas.topics import commands_topic, events_topic, results_topic, snapshots_topic

log = logging.getLogger(__name__)


class TopicLayoutError(RuntimeError):
    """The topics are missing or not co-partitioned."""


@dataclass
class _Pending:
    """One command's outcome within the open transaction; positions arrive with the acks."""

    command_id: str
    aggregate_id: str
    correlation_id: str
    partition: int
    accepted: bool
    version: int | None  # None: no aggregate could be named (an unreadable command without a key)
    digest: str | None
    reason: str | None = None
    detail: str | None = None
    position: str | None = None
    remember: bool = True

    def outcome(self) -> Outcome:
        return Outcome(self.accepted, self.version or 0, self.position, self.reason, self.detail, self.digest)


@dataclass
class _Batch:
    """Working copies for one transaction; merged into the processor's state only on commit."""

    streams: dict[str, Stream] = field(default_factory=dict)
    handled: dict[str, _Pending] = field(default_factory=dict)
    pending: list[_Pending] = field(default_factory=list)
    first_offsets: dict[int, int] = field(default_factory=dict)
    next_offsets: dict[int, int] = field(default_factory=dict)
    event_ends: dict[int, int] = field(default_factory=dict)  # partition -> last event offset + 1
    appended: dict[int, int] = field(default_factory=dict)  # partition -> events appended
    checkpointed: set[int] = field(default_factory=set)  # partitions snapshotted in this batch
    delivery_errors: list[KafkaError] = field(default_factory=list)


def _now() -> datetime:
    return datetime.now(UTC)


class CommandProcessor:
    """Single writer per partition: Kafka's group assignment is the lock, transactions the append."""

    def __init__(self, settings: ProcessorSettings, codec: Codec | None = None) -> None:
        self.settings = settings
        self.codec = codec or codec_reading_the_log(settings.kafka_bootstrap_servers)
        aggregate = settings.aggregate
        self.commands, self.events = commands_topic(aggregate), events_topic(aggregate)
        self.results, self.snapshots = results_topic(aggregate), snapshots_topic(aggregate)
        base = {"bootstrap.servers": settings.kafka_bootstrap_servers, "socket.nagle.disable": True}
        self.consumer = Consumer(
            {
                **base,
                "group.id": settings.processor_group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "session.timeout.ms": settings.processor_session_timeout_ms,
                "heartbeat.interval.ms": max(1000, settings.processor_session_timeout_ms // 5),
                "max.poll.interval.ms": settings.processor_max_poll_interval_ms,
                "fetch.wait.max.ms": 10,
            }
        )
        self.producer = Producer(
            {
                **base,
                "transactional.id": f"{settings.processor_group_id}.{settings.processor_instance_id}",
                "transaction.timeout.ms": settings.processor_transaction_timeout_ms,
                "linger.ms": 1,
            }
        )
        self.partitions = self._check_topic_layout()
        self.loader = StateLoader(
            settings.kafka_bootstrap_servers,
            settings.processor_group_id,
            self.codec,
            {"events": self.events, "results": self.results, "snapshots": self.snapshots},
        )
        self.owned: dict[int, PartitionState] = {}
        self.reason_codes = rejection_reasons(self.codec)
        self.stop_requested = threading.Event()

    def _check_topic_layout(self) -> int:
        metadata = self.consumer.list_topics(timeout=10)
        counts = {}
        for name in (self.commands, self.events, self.results, self.snapshots):
            topic = metadata.topics.get(name)
            if topic is None or topic.error is not None:
                raise TopicLayoutError(f"topic {name} does not exist: run `cqrs topics create`")
            counts[name] = len(topic.partitions)
        if len(set(counts.values())) != 1:
            raise TopicLayoutError(f"topics are not co-partitioned: {counts}")
        return counts[self.commands]

    # -- partition ownership -------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # The committed-offset fetch of a read_committed consumer waits for the previous owner's
        # pending transaction to settle, so the history read next is complete.
        consumer.committed(partitions, timeout=30)
        states, stats = self.loader.load([tp.partition for tp in partitions])
        self.owned.update(states)
        log.info(
            "assigned partitions %s: %d snapshots, %d events, %d results loaded in %.2fs "
            "(frames with the legacy fingerprint order read so far: %d)",
            sorted(states),
            stats.snapshots,
            stats.events,
            stats.results,
            stats.seconds,
            getattr(self.codec, "legacy_frames", 0),
        )

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.owned.pop(tp.partition, None)
        log.info("revoked partitions %s", sorted(tp.partition for tp in partitions))

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> None:
        self.producer.init_transactions()
        self.consumer.subscribe(
            [self.commands], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke
        )
        try:
            while not self.stop_requested.is_set():
                messages = next_batch(
                    self.consumer, self.settings.processor_max_batch, self.settings.processor_poll_timeout_s
                )
                if messages:
                    self.process(messages)
        finally:
            # No transaction is open here: process() always commits or aborts before returning.
            self.consumer.close()  # leaves the group, so the partitions move at once
            log.info("command processor stopped")

    def process(self, messages: list[Message]) -> None:
        """Handle a batch of commands in one transaction: events, results, snapshots and offsets."""
        batch = _Batch()
        self.producer.begin_transaction()
        try:
            for msg in messages:
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(err)
                partition, offset = msg.partition() or 0, msg.offset() or 0
                if partition not in self.owned:
                    continue  # revoked while fetched; the new owner reads it again
                batch.first_offsets.setdefault(partition, offset)
                batch.next_offsets[partition] = offset + 1
                self._handle(msg, batch)
            self.producer.flush()
            if batch.delivery_errors:
                raise KafkaException(batch.delivery_errors[0])
            for pending in batch.pending:
                self._send_result(pending)
            self._maybe_snapshot(batch)
            if batch.next_offsets:
                self.producer.send_offsets_to_transaction(
                    [TopicPartition(self.commands, p, o) for p, o in batch.next_offsets.items()],
                    self.consumer.consumer_group_metadata(),
                )
            self.producer.commit_transaction()
        except KafkaException as exc:
            error = exc.args[0]
            if isinstance(error, KafkaError) and error.txn_requires_abort():
                log.warning("transaction aborted (%s); the batch will be read again", error)
                self.producer.abort_transaction()
                self._rewind(batch.first_offsets)
                return
            raise
        self._merge(batch)

    def _merge(self, batch: _Batch) -> None:
        for aggregate_id, stream in batch.streams.items():
            state = self.owned.get(partition_for(aggregate_id, self.partitions))
            if state is not None:
                state.streams[aggregate_id] = stream
        for pending in batch.pending:
            state = self.owned.get(pending.partition)
            if state is not None and pending.remember:
                state.handled[pending.command_id] = pending.outcome()
        for partition, appended in batch.appended.items():
            state = self.owned.get(partition)
            if state is None:
                continue
            if partition in batch.checkpointed:
                state.dirty, state.events_since_checkpoint = set(), 0
            else:
                state.events_since_checkpoint += appended

    def _rewind(self, first_offsets: dict[int, int]) -> None:
        owned = {tp.partition for tp in self.consumer.assignment()}
        for partition, offset in first_offsets.items():
            if partition in owned:
                self.consumer.seek(TopicPartition(self.commands, partition, offset))

    def _handle(self, msg: Message, batch: _Batch) -> None:
        partition = msg.partition() or 0
        try:
            decoded = self.codec.decode(msg.value() or b"")
            envelope, command = command_from_record(decoded.name, decoded.record)
        except (CodecError, UnknownMessageType, KeyError, TypeError) as exc:
            self._reject_unreadable(msg, exc, batch)
            return
        digest = request_hash(envelope, command)
        home = partition_for(envelope.aggregate_id, self.partitions)
        if home != partition:
            self._forward(msg, home)
            return
        stream = self._stream(batch, partition, envelope.aggregate_id)
        misrouted_from = header(msg, MISROUTED_FROM_HEADER)
        if misrouted_from is not None:
            self._add(
                batch,
                envelope,
                partition,
                False,
                stream.version,
                digest,
                reason="wrong_partition",
                detail=f"sent to partition {misrouted_from}; commands of this aggregate go to partition "
                f"{partition} (murmur2(aggregate_id) % {self.partitions})",
                remember=False,
            )
            return
        state = self.owned[partition]
        earlier = batch.handled.get(envelope.command_id)
        previous = earlier.outcome() if earlier else state.handled.get(envelope.command_id)
        decision = handle(stream, envelope, command, previous, digest)
        match decision:
            case AlreadyHandled(previous):
                if earlier is not None:
                    # Same id twice in one batch: answer with the first one's outcome, whose
                    # position arrives with the broker's ack.
                    batch.pending.append(earlier)
                else:
                    replay = self._add(
                        batch,
                        envelope,
                        partition,
                        previous.accepted,
                        previous.version,
                        previous.request_hash,
                        reason=previous.reason,
                        detail=previous.detail,
                        remember=False,
                    )
                    replay.position = previous.position
            case Rejected(reason, detail, version, remember):
                self._add(
                    batch,
                    envelope,
                    partition,
                    False,
                    version,
                    digest,
                    reason=reason,
                    detail=detail,
                    remember=remember,
                )
            case Accepted(events, first_version):
                last_version = first_version + len(events) - 1
                pending = self._add(batch, envelope, partition, True, last_version, digest)
                occurred_at = _now()
                for version, event in enumerate(events, start=first_version):
                    name, record = event_to_record(
                        event,
                        event_id=str(uuid.uuid4()),
                        aggregate_id=envelope.aggregate_id,
                        version=version,
                        occurred_at=occurred_at,
                        command=envelope,
                    )
                    stream.apply(event, version)  # now, so the next command of this batch sees it
                    self.producer.produce(
                        self.events,
                        key=event_key(envelope.aggregate_id, version),
                        value=self.codec.encode(name, record),
                        partition=partition,
                        on_delivery=self._on_event_delivered(
                            batch, pending if version == last_version else None
                        ),
                    )
                batch.appended[partition] = batch.appended.get(partition, 0) + len(events)
                state.dirty.add(envelope.aggregate_id)

    def _add(
        self,
        batch: _Batch,
        envelope: CommandEnvelope,
        partition: int,
        accepted: bool,
        version: int,
        digest: str | None,
        *,
        reason: str | None = None,
        detail: str | None = None,
        remember: bool = True,
    ) -> _Pending:
        pending = _Pending(
            envelope.command_id,
            envelope.aggregate_id,
            envelope.correlation_id,
            partition,
            accepted,
            version,
            digest,
            reason,
            detail,
            remember=remember,
        )
        batch.pending.append(pending)
        if remember:
            batch.handled[envelope.command_id] = pending
        return pending

    def _stream(self, batch: _Batch, partition: int, aggregate_id: str) -> Stream:
        """This batch's working copy of an aggregate's stream (made on first use)."""
        stream = batch.streams.get(aggregate_id)
        if stream is None:
            known = self.owned[partition].streams.get(aggregate_id)
            stream = Stream(known.state, known.version) if known else Stream()
            batch.streams[aggregate_id] = stream
        return stream

    def _forward(self, msg: Message, home: int) -> None:
        """A command on another partition than its aggregate's is passed, in this transaction, to
        the aggregate's partition, whose single writer answers it (on the aggregate's results
        partition, with the aggregate's real version) as `wrong_partition`."""
        headers = [(k, v) for k, v in (msg.headers() or []) if k != MISROUTED_FROM_HEADER]  # type: ignore[str-unpack]
        self.producer.produce(
            self.commands,
            key=msg.key(),
            value=msg.value(),
            partition=home,
            headers=[*headers, (MISROUTED_FROM_HEADER, str(msg.partition()).encode())],
        )

    def _reject_unreadable(self, msg: Message, exc: Exception, batch: _Batch) -> None:
        """A command that cannot be read is answered on its aggregate's partition (the key names
        the aggregate) under the id its `command_id` header gives, and skipped."""
        partition = msg.partition() or 0
        raw_key = msg.key()
        aggregate_id = raw_key.decode(errors="replace") if raw_key else None
        if aggregate_id is not None and header(msg, MISROUTED_FROM_HEADER) is None:
            home = partition_for(aggregate_id, self.partitions)
            if home != partition:
                self._forward(msg, home)
                return
        log.error("unreadable command at %s[%s]@%s: %s", msg.topic(), partition, msg.offset(), exc)
        version = self._stream(batch, partition, aggregate_id).version if aggregate_id else None
        batch.pending.append(
            _Pending(
                command_id=header(msg, COMMAND_ID_HEADER) or f"unreadable:{partition}:{msg.offset()}",
                aggregate_id=aggregate_id or "",
                correlation_id="",
                partition=partition,
                accepted=False,
                version=version,
                digest=None,
                reason="malformed_command",
                detail=str(exc)[:500],
                remember=False,
            )
        )

    @staticmethod
    def _on_event_delivered(batch: _Batch, pending: _Pending | None) -> Any:
        def callback(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                batch.delivery_errors.append(err)
                return
            partition, offset = msg.partition() or 0, msg.offset() or 0
            batch.event_ends[partition] = max(batch.event_ends.get(partition, 0), offset + 1)
            if pending is not None:
                pending.position = Position(partition, offset).token()

        return callback

    def _reason_code(self, reason: str | None) -> str | None:
        if reason is None:
            return None
        return reason if reason in self.reason_codes else "other"

    def _send_result(self, pending: _Pending) -> None:
        record = {
            "command_id": pending.command_id,
            "aggregate_id": pending.aggregate_id,
            "correlation_id": pending.correlation_id,
            "status": "ACCEPTED" if pending.accepted else "REJECTED",
            "version": pending.version,
            "position": pending.position,
            "reason": pending.reason,
            "reason_code": self._reason_code(pending.reason),
            "detail": pending.detail,
            "completed_at": _now(),
            "request_hash": pending.digest,
        }
        self.producer.produce(
            self.results,
            key=pending.command_id,
            value=self.codec.encode("CommandResult", record),
            partition=pending.partition,
        )

    def _maybe_snapshot(self, batch: _Batch) -> None:
        """Every N events per partition: snapshots of the changed aggregates and a checkpoint,
        in this transaction, so a new owner reads only the events after the checkpoint."""
        taken_at = _now()
        for partition, appended in batch.appended.items():
            state = self.owned[partition]
            if state.events_since_checkpoint + appended < self.settings.processor_snapshot_every:
                continue
            for aggregate_id in state.dirty:
                stream = batch.streams.get(aggregate_id) or state.streams.get(aggregate_id)
                if stream is None or stream.state is None:
                    continue
                self.producer.produce(
                    self.snapshots,
                    key=aggregate_id,
                    partition=partition,
                    value=self.codec.encode(
                        "AccountSnapshot", snapshot_to_record(aggregate_id, stream, taken_at)
                    ),
                )
            checkpoint = {
                "partition": partition,
                "events_offset": batch.event_ends[partition],
                "taken_at": taken_at,
            }
            self.producer.produce(
                self.snapshots,
                key=f"{CHECKPOINT_PREFIX}{partition}",
                partition=partition,
                value=self.codec.encode("PartitionCheckpoint", checkpoint),
            )
            batch.checkpointed.add(partition)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    processor = CommandProcessor(ProcessorSettings())
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: processor.stop_requested.set())
    began = time.monotonic()
    processor.run()
    log.info("ran %.0fs", time.monotonic() - began)


if __name__ == "__main__":
    main()
