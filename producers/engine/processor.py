"""The command processor of one aggregate type: owns partitions of commands.<aggregate> (Kafka's group
assignment is the lock) and runs each batch through its SingleWriter in one Kafka transaction:
events, results, snapshots and the consumed offsets commit together or not at all. A Kafka outage
is waited out: an aborted batch is read again, a fatal producer is replaced."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from producers.engine.aggregate import Aggregate
from producers.engine.batch import Batch, PartitionState, SingleWriter
from producers.engine.batches import next_batch
from producers.engine.idempotency import IdempotencyMemory
from producers.engine.kafka_errors import CallThread, error_of, unrecoverable
from producers.engine.state_loader import LoadStats, StateLoader
from producers.engine.transactional_loop import CALL_TIMEOUT_S, TransactionalLoop
from producers.settings import ProcessorSettings
from schemas.codec import Codec
from schemas.kafka_security import kafka_config
from schemas.topics import commands_topic, events_topic, results_topic, snapshots_topic

log = logging.getLogger(__name__)

REJOIN_AFTER_S = 30.0  # unassigned this long while Kafka answers: a new group member (AssignmentWatch)


class TopicLayoutError(RuntimeError):
    """The topics are missing or not co-partitioned."""


@dataclass
class AssignmentWatch:
    """How long the consumer has been out of an assignment: since it subscribed or its partitions
    were revoked or lost, until its next assignment (an empty one too: more members than
    partitions is a state, not a fault). librdkafka rejoins by itself, but a member whose session
    timed out during a broker pause was seen never to be assigned again (its coordinator
    connection stuck) while the broker answered: after `limit_s` the main loop replaces it."""

    limit_s: float
    since: float | None = None

    def unassigned(self, now: float) -> None:
        if self.since is None:
            self.since = now

    def assigned(self) -> None:
        self.since = None

    def expire(self) -> None:
        """Overdue at once (an assignment that could not be taken up)."""
        self.since = float("-inf")

    def count_from(self, now: float) -> None:
        """A new member, or Kafka is away (which is not the member's fault)."""
        self.since = now

    def waited(self, now: float) -> float:
        return 0.0 if self.since is None else now - self.since

    def overdue(self, now: float) -> bool:
        return self.waited(now) > self.limit_s


class CommandProcessor(TransactionalLoop):
    def __init__(self, settings: ProcessorSettings, aggregate: Aggregate, codec: Codec) -> None:
        super().__init__(log, settings.processor_broker_wait_s)
        self.settings, self.aggregate, self.codec = settings, aggregate, codec
        self.watch = AssignmentWatch(max(REJOIN_AFTER_S, 3 * settings.processor_session_timeout_ms / 1000))
        self.base = kafka_config(settings.kafka_bootstrap_servers, {"socket.nagle.disable": True})
        self.consumer = self._new_consumer()
        self.producer = self._new_producer()
        partitions = self._check_topic_layout()
        self.writer = SingleWriter(
            aggregate, codec, partitions, self.producer, settings.processor_snapshot_every, settings.topics
        )
        # The memory limit is the processor's; one member may own every partition.
        per_partition = max(1, settings.processor_idempotency_max_commands // partitions)
        self.loader = StateLoader(
            settings.kafka_bootstrap_servers,
            settings.group_id,
            codec,
            aggregate,
            settings.topics,
            functools.partial(IdempotencyMemory, settings.processor_idempotency_window_s, per_partition),
        )

    def _new_consumer(self) -> Consumer:
        settings = self.settings
        return Consumer(
            {
                **self.base,
                "group.id": settings.group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "session.timeout.ms": settings.processor_session_timeout_ms,
                "heartbeat.interval.ms": max(1000, settings.processor_session_timeout_ms // 5),
                "max.poll.interval.ms": settings.processor_max_poll_interval_ms,
                "fetch.min.bytes": settings.processor_fetch_min_bytes,
                "fetch.wait.max.ms": settings.processor_fetch_wait_max_ms,
                "error_cb": self._on_client_error,
            }
        )

    def _new_producer(self) -> Producer:
        settings = self.settings
        return self._transactional_producer(
            self.base,
            f"{settings.group_id}.{settings.processor_instance_id}",
            settings.processor_transaction_timeout_ms,
            linger_ms=settings.processor_linger_ms,
            retry_backoff_ms=settings.processor_retry_backoff_ms,
        )

    def _check_topic_layout(self) -> int:
        metadata = self.patience.retry(
            "reading the topics' metadata", lambda: self.consumer.list_topics(timeout=CALL_TIMEOUT_S)
        )
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
        if consumer is not self.consumer:
            return  # a replaced member (closing on its own thread): its partitions are not taken up
        # The committed-offset fetch of a read_committed consumer waits for the previous owner's
        # pending transaction to settle, so the history read next is complete. A member that keeps
        # timing out there is replaced (run() -> _rejoin) rather than waited for: one was seen to
        # time out every fetch for minutes while the broker was healthy.
        try:
            self.patience.retry(
                "reading the committed offsets",
                lambda: consumer.committed(partitions, timeout=CALL_TIMEOUT_S),
                attempts=3,
            )
        except KafkaException as exc:
            if unrecoverable(error_of(exc)):
                raise
            log.warning(
                "assigned partitions %s but their committed offsets could not be read (%s): "
                "rejoining the group with a new member",
                sorted(tp.partition for tp in partitions), error_of(exc) or exc,
            )  # fmt: skip
            self.watch.expire()  # the partitions stay unowned: their commands are skipped, not decided
            return
        states, stats = self._load([tp.partition for tp in partitions])
        self.writer.owned.update(states)
        self.watch.assigned()
        log.info(
            "assigned partitions %s: %d snapshots, %d events, %d results (%d outcomes remembered) "
            "loaded in %.2fs (frames with the legacy fingerprint order read so far: %d)",
            sorted(states), stats.snapshots, stats.events, stats.results,
            sum(len(state.handled) for state in states.values()), stats.seconds,
            getattr(self.codec, "legacy_frames", 0),
        )  # fmt: skip

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if consumer is not self.consumer:
            return  # a replaced member: writer.owned was cleared when it was replaced
        for tp in partitions:
            self.writer.owned.pop(tp.partition, None)
        self.watch.unassigned(time.monotonic())
        log.info("revoked partitions %s", sorted(tp.partition for tp in partitions))

    def _load(self, partitions: list[int]) -> tuple[dict[int, PartitionState], LoadStats]:
        return self.patience.retry(
            f"loading partitions {sorted(partitions)}", lambda: self.loader.load(partitions)
        )

    # -- the loop ------------------------------------------------------------------------

    # run() is TransactionalLoop's; these are its hooks.

    def _next_turn(self) -> Callable[[], None] | None:
        """A batch of commands to process(); polled outside run()'s guard, so a consumer error that
        no waiting fixes ends run()."""
        messages = self._poll()
        if self._watch_assignment() or not messages:
            return None  # replaced: what the old member fetched is read again by the new one
        return functools.partial(self.process, messages)

    def _close_member(self) -> None:
        _close(self.consumer)
        log.info("command processor of %s stopped", self.aggregate.name)

    def _watch_assignment(self) -> bool:
        """Replaces the group member when it has gone without an assignment for longer than the
        watch allows while Kafka answers metadata (True: replaced). While Kafka does not answer,
        librdkafka's own rejoin is waited for."""
        now = time.monotonic()
        if not self.watch.overdue(now):
            return False
        waited = self.watch.waited(now)
        try:  # asked of the producer: the member's own connections are what may be stuck
            self.producer.list_topics(self.writer.commands, timeout=CALL_TIMEOUT_S)
        except KafkaException as exc:
            self.quiet.warning(
                "unassigned", "no partitions assigned for %.0fs, and Kafka does not answer (%s): waiting",
                waited, error_of(exc) or exc,
            )  # fmt: skip
            self.watch.count_from(time.monotonic())
            return False
        log.error(
            "no partitions assigned %s while Kafka answers: rejoining the group with a new member, "
            "from the committed offsets with the state reloaded from the log",
            "after a failed assignment" if waited == float("inf") else f"for {waited:.0f}s",
        )  # fmt: skip
        self._rejoin()
        return True

    def _rejoin(self) -> None:
        """A new group member in place of the current one, which is closed (_close); the old one's
        callbacks are ignored from here on, and the new one's assignment reloads the partitions."""
        old, self.consumer = self.consumer, self._new_consumer()
        self.writer.owned.clear()
        _close(old)
        self._subscribe()

    def _subscribe(self) -> None:
        self.watch.count_from(time.monotonic())
        self.consumer.subscribe(
            [self.writer.commands],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )

    def _poll(self) -> list[Message]:
        """The next batch of commands; the consumer's own errors are logged and passed over (it
        reconnects by itself), unless no waiting can fix them."""
        commands = []
        settings = self.settings
        for msg in next_batch(
            self.consumer,
            settings.processor_max_batch,
            settings.processor_poll_timeout_s,
            settings.processor_batch_gather_ms / 1000,
        ):
            error = msg.error()
            if error is None:
                commands.append(msg)
            elif error.fatal() or unrecoverable(error):
                raise KafkaException(error)
            elif error.code() != KafkaError._PARTITION_EOF:
                self.quiet.warning(f"consume:{error.code()}", "consumer: %s; it goes on by itself", error)
        return commands

    def process(self, messages: list[Message]) -> None:
        """Handle a batch of commands in one transaction: events, results, snapshots and offsets.
        An abortable failure (a delivery that timed out, a transaction the broker refused) aborts
        it and rewinds to the batch's first offsets, so it is read and decided again; a fatal one
        is raised (run() replaces the producer)."""
        batch = Batch()
        self.producer.begin_transaction()  # local: raises only when the producer is fatal
        try:
            for msg in messages:
                if msg.error() is None:
                    self.writer.handle(msg, batch)
            # The consumed offsets are known now: they go to the coordinator (two round trips) on
            # the call thread while this one waits for the events' acks, rather than after them.
            send_offsets = self._send_offsets(batch)
            # message.timeout.ms is the transaction timeout, so every record is acknowledged or
            # failed by then; a flush that outlasts it is a producer stuck (seen after a pause),
            # and the batch is aborted like one whose records failed.
            flush_s = self.settings.processor_transaction_timeout_ms / 1000 + 2
            if left := self.producer.flush(flush_s):
                batch.delivery_errors.append(
                    KafkaError(KafkaError._MSG_TIMED_OUT, f"{left} records unacknowledged in {flush_s:.0f}s")
                )
            if batch.delivery_errors:
                raise KafkaException(batch.delivery_errors[0])
            self.writer.finish(batch)
            if send_offsets is not None:
                self.patience.retry("sending the consumed offsets", send_offsets, attempts=6)
            self._commit_transaction()
        except KafkaException as exc:
            error = error_of(exc)
            if error is None or error.fatal() or not (error.txn_requires_abort() or batch.delivery_errors):
                raise
            self._abort(batch, error, len(messages))
            return
        self.writer.merge(batch)  # only now: the state in memory never runs ahead of the log

    def _send_offsets(self, batch: Batch) -> Callable[[], None] | None:
        """Starts sending the batch's consumed offsets into the transaction; what it returns
        waits for that, and sends them again when called after a failed attempt (Patience.retry
        calls it, up to 6 times, then a new producer waits for Kafka as long as it takes)."""
        if not batch.next_offsets:
            return None
        offsets = [TopicPartition(self.writer.commands, p, o) for p, o in batch.next_offsets.items()]
        group = self.consumer.consumer_group_metadata()
        producer = self.producer

        def send() -> None:
            producer.send_offsets_to_transaction(offsets, group, CALL_TIMEOUT_S)

        started = [self.bounded.start("send_offsets_to_transaction", send)]

        def attempt() -> None:
            if started:
                started.pop()()  # the first attempt: the one started above
            else:
                self.bounded("send_offsets_to_transaction", send)

        return attempt

    def _abort(self, batch: Batch, error: KafkaError, commands: int) -> None:
        log.warning(
            "transaction of %d commands failed (%s): aborting it and reading them again from offsets %s",
            commands, error, dict(sorted(batch.first_offsets.items())),
        )  # fmt: skip
        self._abort_transaction()
        self._rewind(batch.first_offsets)

    def _rewind(self, first_offsets: dict[int, int]) -> None:
        """Seek back to the batch's first offsets; a seek waits for the partition's fetcher without
        a timeout, so a seek not done in CALL_TIMEOUT_S is left to its thread, and a new group member
        (which starts from the committed offsets, the same ones) takes the old one's place."""
        owned = {tp.partition for tp in self.consumer.assignment()}
        back = [TopicPartition(self.writer.commands, p, o) for p, o in first_offsets.items() if p in owned]
        consumer = self.consumer

        def seek_back() -> None:
            for tp in back:
                consumer.seek(tp)

        try:
            CallThread().run(seek_back, CALL_TIMEOUT_S)
        except TimeoutError:
            log.error(
                "seeking back did not return in %.0fs: rejoining the group with a new member", CALL_TIMEOUT_S
            )
            self._rejoin()

    # -- a fatal producer ----------------------------------------------------------------

    def _drop_producer(self) -> None:
        super()._drop_producer()
        self.writer.outbox = self.producer


def _close(consumer: Consumer) -> None:
    """Close a group member (it leaves the group) on a thread of its own, waiting CALL_TIMEOUT_S:
    a member stuck on its group coordinator may block in close."""
    try:
        CallThread().run(consumer.close, CALL_TIMEOUT_S)
    except TimeoutError:
        log.warning("closing the group member did not return in %.0fs; it is left to itself", CALL_TIMEOUT_S)
    except (KafkaException, RuntimeError) as exc:
        log.warning("closing the group member failed (%s); the group drops it after its session", exc)
