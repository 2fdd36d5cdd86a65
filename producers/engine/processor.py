"""The command processor of one aggregate type: owns partitions of commands.<aggregate> (Kafka's group
assignment is the lock) and runs each batch through its SingleWriter in one Kafka transaction:
events, results, snapshots and the consumed offsets commit together or not at all."""

from __future__ import annotations

import logging
import threading

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from producers.engine.aggregate import Aggregate
from producers.engine.batch import Batch, SingleWriter
from producers.engine.batches import next_batch
from producers.engine.state_loader import StateLoader
from producers.settings import ProcessorSettings
from schemas.codec import Codec
from schemas.kafka_security import kafka_config
from schemas.topics import commands_topic, events_topic, results_topic, snapshots_topic

log = logging.getLogger(__name__)


class TopicLayoutError(RuntimeError):
    """The topics are missing or not co-partitioned."""


class CommandProcessor:
    def __init__(self, settings: ProcessorSettings, aggregate: Aggregate, codec: Codec) -> None:
        self.settings, self.aggregate, self.codec = settings, aggregate, codec
        base = kafka_config(settings.kafka_bootstrap_servers, {"socket.nagle.disable": True})
        self.consumer = Consumer(
            {
                **base,
                "group.id": settings.group_id,
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
                "transactional.id": f"{settings.group_id}.{settings.processor_instance_id}",
                "transaction.timeout.ms": settings.processor_transaction_timeout_ms,
                "linger.ms": 1,
            }
        )
        partitions = self._check_topic_layout()
        self.writer = SingleWriter(
            aggregate, codec, partitions, self.producer, settings.processor_snapshot_every, settings.topics
        )
        self.loader = StateLoader(
            settings.kafka_bootstrap_servers, settings.group_id, codec, aggregate, settings.topics
        )
        self.stop_requested = threading.Event()

    def _check_topic_layout(self) -> int:
        metadata = self.consumer.list_topics(timeout=10)
        counts = {}
        for name in self.writer_topics():
            topic = metadata.topics.get(name)
            if topic is None or topic.error is not None:
                raise TopicLayoutError(f"topic {name} does not exist: run `cqrs topics create`")
            counts[name] = len(topic.partitions)
        if len(set(counts.values())) != 1:
            raise TopicLayoutError(f"topics are not co-partitioned: {counts}")
        return next(iter(counts.values()))

    def writer_topics(self) -> list[str]:
        suffix = self.settings.topics
        return [commands_topic(suffix), events_topic(suffix), results_topic(suffix), snapshots_topic(suffix)]

    # -- partition ownership -------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # The committed-offset fetch of a read_committed consumer waits for the previous owner's
        # pending transaction to settle, so the history read next is complete.
        consumer.committed(partitions, timeout=30)
        states, stats = self.loader.load([tp.partition for tp in partitions])
        self.writer.owned.update(states)
        log.info(
            "assigned partitions %s: %d snapshots, %d events, %d results loaded in %.2fs "
            "(frames with the legacy fingerprint order read so far: %d)",
            sorted(states), stats.snapshots, stats.events, stats.results, stats.seconds,
            getattr(self.codec, "legacy_frames", 0),
        )  # fmt: skip

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.writer.owned.pop(tp.partition, None)
        log.info("revoked partitions %s", sorted(tp.partition for tp in partitions))

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> None:
        self.producer.init_transactions()
        self.consumer.subscribe(
            [self.writer.commands],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
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
            log.info("command processor of %s stopped", self.aggregate.name)

    def process(self, messages: list[Message]) -> None:
        """Handle a batch of commands in one transaction: events, results, snapshots and offsets."""
        batch = Batch()
        self.producer.begin_transaction()
        try:
            for msg in messages:
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(err)
                self.writer.handle(msg, batch)
            self.producer.flush()
            if batch.delivery_errors:
                raise KafkaException(batch.delivery_errors[0])
            self.writer.finish(batch)
            if batch.next_offsets:
                self.producer.send_offsets_to_transaction(
                    [TopicPartition(self.writer.commands, p, o) for p, o in batch.next_offsets.items()],
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
        self.writer.merge(batch)

    def _rewind(self, first_offsets: dict[int, int]) -> None:
        owned = {tp.partition for tp in self.consumer.assignment()}
        for partition, offset in first_offsets.items():
            if partition in owned:
                self.consumer.seek(TopicPartition(self.writer.commands, partition, offset))
