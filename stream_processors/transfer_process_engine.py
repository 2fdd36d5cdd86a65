"""The transfer process's Kafka loop: consume -> decide (transfer_process_rules) -> produce, each
batch one Kafka transaction holding the commands, the re-keyed facts and the consumed offsets.

Topics read (one consumer group, read_committed, the range assignor so that partition p of every
topic goes to the same member):
- `events.transfer` and the process's own `transfer-process.facts` (keyed by transfer id, as
  many partitions): the owner of partition p holds the sagas of the transfers of partition p.
- `events.account` and `results.account`: AccountDebited, AccountCredited and refusals of the
  process's own account commands are forwarded, unchanged, to the facts topic keyed by their
  transfer id (and applied at once when this process owns that transfer, as it always does
  when it runs alone); a forwarded fact read back is a no-op for a saga that knows it already.

On assignment the owner rebuilds its sagas by replaying its partitions of both transfer-keyed
topics up to the group's committed offsets (everything reacted to), then reads on from there.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from producers.engine.batches import next_batch
from producers.engine.kafka_errors import error_of, unrecoverable
from producers.engine.transactional_loop import CALL_TIMEOUT_S, TransactionalLoop
from schemas.codec import Codec, CodecError
from schemas.headers import ACTOR_HEADER, ACTOR_OWNER_ID_HEADER, COMMAND_ID_HEADER
from schemas.kafka_security import kafka_config
from schemas.keys import partition_for
from schemas.topics import commands_topic, events_topic, results_topic
from stream_processors.transfer_process_rules import (
    Fact,
    GaveUp,
    Policy,
    Reaction,
    Recorded,
    Saga,
    Send,
    account_fact,
    command_id,
    react,
    timeout,
    transfer_fact,
)

log = logging.getLogger(__name__)

Headers = list[tuple[str, str | bytes | None]]

LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
FACTS_RETENTION_MS = 7 * 24 * 60 * 60 * 1000  # as long as commands are kept


class TopicLayoutError(RuntimeError):
    """A topic is missing, or the transfer-keyed topics are not co-partitioned."""


@dataclass(frozen=True)
class Config:
    """What the loop needs from the service's settings."""

    bootstrap: str
    group_id: str
    instance_id: str
    account_topics: str  # suffix: events.<it>, results.<it>, commands.<it>
    transfer_topics: str
    facts_topic: str
    policy: Policy
    max_batch: int = 500
    poll_timeout_s: float = 0.05
    transaction_timeout_ms: int = 10_000
    session_timeout_ms: int = 10_000
    # How long a broker outage is waited out (one call retried) before the process gives up.
    broker_wait_s: float = 600.0
    # Fault injection for tests: after this many committed transactions, the next one that sends
    # anything exits the process after producing, before committing (0: never).
    exit_before_commit_after: int = 0


@dataclass
class Counters:
    """What /metrics shows; written by the loop's thread only."""

    notes: Counter[str] = field(default_factory=Counter)  # started, completed, failed:<reason>, ...
    sent: Counter[str] = field(default_factory=Counter)  # commands by step
    forwarded: int = 0
    undecodable: int = 0
    transactions: int = 0
    aborted: int = 0
    in_flight: int = 0
    stuck: int = 0
    rebuild_records: int = 0
    rebuild_seconds: float = 0.0
    latency_buckets: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS_S))
    latency_count: int = 0
    latency_sum_s: float = 0.0

    def observe_completion(self, seconds: float) -> None:
        self.latency_count += 1
        self.latency_sum_s += seconds
        for i, bound in enumerate(LATENCY_BUCKETS_S):
            if seconds <= bound:
                self.latency_buckets[i] += 1


@dataclass
class _Batch:
    """One transaction's work; merged into the process's state only once it committed."""

    sagas: dict[str, Saga | None] = field(default_factory=dict)  # overlay (None: forgotten)
    records: list[tuple[str, int, str, bytes, Headers]] = field(default_factory=list)
    first_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    next_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    notes: Counter[str] = field(default_factory=Counter)
    sent: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    forwarded: int = 0
    delivery_errors: list[KafkaError] = field(default_factory=list)


class TransferProcess(TransactionalLoop):
    """The process manager of transfers; `run` blocks until `stop_requested` is set."""

    def __init__(
        self,
        config: Config,
        codec: Codec,
        clock: Callable[[], float] = time.monotonic,
        *,
        clients: tuple[Consumer, Producer, dict[str, int]] | None = None,
    ) -> None:
        """`clients`: a consumer, a producer and the topics' partition counts to use instead of
        real ones (unit tests pass fakes)."""
        super().__init__(log, config.broker_wait_s)
        self.config, self.codec, self.clock = config, codec, clock
        self.policy = config.policy
        self.transfer_events = events_topic(config.transfer_topics)
        self.account_events = events_topic(config.account_topics)
        self.account_results = results_topic(config.account_topics)
        self.command_topics = {
            "account": commands_topic(config.account_topics),
            "transfer": commands_topic(config.transfer_topics),
        }
        self.facts = config.facts_topic
        self.base: dict[str, Any] = kafka_config(config.bootstrap, {"socket.nagle.disable": True})
        if clients is not None:
            self.consumer, self.producer, self.partitions = clients
        else:
            self.partitions = self._prepare_topics()
            self.consumer, self.producer = self._new_consumer(), self._new_producer()
        self.sagas: dict[str, Saga] = {}
        self.owned: set[int] = set()  # partitions of the transfer-keyed topics
        self.counters = Counters()
        self.ready = threading.Event()  # set once partitions were assigned and sagas rebuilt
        self._next_check = 0.0

    def _new_consumer(self) -> Consumer:
        config = self.config
        return Consumer(
            {
                **self.base,
                "group.id": config.group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "partition.assignment.strategy": "range",  # partition p of every topic together
                "session.timeout.ms": config.session_timeout_ms,
                "heartbeat.interval.ms": max(1000, config.session_timeout_ms // 5),
                "fetch.wait.max.ms": 10,
                "error_cb": self._on_client_error,
            }
        )

    def _new_producer(self) -> Producer:
        config = self.config
        return self._transactional_producer(
            self.base, f"{config.group_id}.{config.instance_id}", config.transaction_timeout_ms, linger_ms=1
        )

    # -- topics --------------------------------------------------------------------------

    def _prepare_topics(self) -> dict[str, int]:
        """Partition counts of every topic; creates the facts topic like events.transfer."""
        admin = AdminClient({**self.base, "log_level": 4})
        names = [
            self.transfer_events,
            self.account_events,
            self.account_results,
            *self.command_topics.values(),
        ]
        topics = self.patience.retry(
            "reading the topics' metadata", lambda: admin.list_topics(timeout=15)
        ).topics
        counts: dict[str, int] = {}
        for name in names:
            topic = topics.get(name)
            if topic is None or topic.error is not None:
                raise TopicLayoutError(f"topic {name} does not exist: run `cqrs topics create`")
            counts[name] = len(topic.partitions)
        if self.facts not in topics:
            spec = NewTopic(
                self.facts,
                num_partitions=counts[self.transfer_events],
                replication_factor=-1,  # the broker's default
                config={"cleanup.policy": "delete", "retention.ms": str(FACTS_RETENTION_MS)},
            )
            for future in admin.create_topics([spec]).values():
                try:
                    future.result()
                except KafkaException as exc:
                    if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                        raise
            log.info("created %s with %d partitions", self.facts, counts[self.transfer_events])
        deadline = time.monotonic() + 30
        while True:
            topic = admin.list_topics(timeout=15).topics.get(self.facts)
            if (
                topic is not None
                and topic.error is None
                and all(p.leader >= 0 for p in topic.partitions.values())
            ):
                counts[self.facts] = len(topic.partitions)
                break
            if time.monotonic() > deadline:
                raise TopicLayoutError(f"{self.facts} has no leader for every partition")
            time.sleep(0.1)
        if counts[self.facts] != counts[self.transfer_events]:
            raise TopicLayoutError(
                f"{self.facts} has {counts[self.facts]} partitions, {self.transfer_events} "
                f"{counts[self.transfer_events]}: they must be co-partitioned"
            )
        return counts

    def transfer_partition(self, transfer_id: str) -> int:
        return partition_for(transfer_id, self.partitions[self.transfer_events])

    # -- partition ownership -------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        began = time.monotonic()
        # A read_committed consumer's committed-offset fetch waits for the previous owner's
        # pending transaction to settle, so the replay below sees everything it reacted to.
        committed = self.patience.retry(
            "reading the committed offsets", lambda: consumer.committed(partitions, timeout=30)
        )
        keyed = [tp for tp in committed if tp.topic in (self.transfer_events, self.facts)]
        records = 0
        sagas = dict(self.sagas)
        uncommitted = set()
        for topic in (self.transfer_events, self.facts):  # a saga exists before facts about it
            ours = [tp for tp in keyed if tp.topic == topic]
            ends, replayed, sagas = self.patience.retry(
                f"replaying {topic}", functools.partial(self._replay_onto, topic, ours, sagas)
            )
            records += replayed
            for tp in ours:
                if tp.offset < 0:
                    # No committed offset (a new group, or a partition it never read from): the
                    # history is folded, never reacted to (a step of an old transfer re-sent
                    # after the accounts' idempotency window would be applied again); what is
                    # still in flight there has its pending step sent at once, from what it knows.
                    tp.offset = ends[tp.partition]
                    uncommitted.add(tp.partition)
        now = self.clock()
        mine = {tp.partition for tp in keyed}
        for transfer_id, saga in list(sagas.items()):
            partition = self.transfer_partition(transfer_id)
            if partition in mine:
                due = now if partition in uncommitted else now + self.policy.timeout_s
                sagas[transfer_id] = replace(saga, deadline=due)
        self.sagas = sagas
        self.owned |= mine
        consumer.assign(committed)
        seconds = time.monotonic() - began
        self.counters.rebuild_records += records
        self.counters.rebuild_seconds += seconds
        log.info(
            "assigned partitions %s: %d transfers in flight rebuilt from %d records in %.2fs",
            sorted(mine),
            len(self.sagas),
            records,
            seconds,
        )
        self._next_check = 0.0  # look for due transfers at once
        self.ready.set()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        gone = {tp.partition for tp in partitions if tp.topic in (self.transfer_events, self.facts)}
        self.owned -= gone
        self.sagas = {t: s for t, s in self.sagas.items() if self.transfer_partition(t) not in gone}
        log.info("revoked partitions %s", sorted(gone))

    def _replay_onto(
        self, topic: str, partitions: list[TopicPartition], sagas: dict[str, Saga]
    ) -> tuple[dict[int, int], int, dict[str, Saga]]:
        """_replay onto a copy of `sagas` (a replay cut short by an outage is started over)."""
        copy = dict(sagas)
        ends, count = self._replay(topic, partitions, copy)
        return ends, count, copy

    def _replay(
        self, topic: str, partitions: list[TopicPartition], sagas: dict[str, Saga]
    ) -> tuple[dict[int, int], int]:
        """Fold partitions of a transfer-keyed topic into `sagas`, each from its start up to its
        committed offset (to its end when it has none); returns per partition the offset to read
        on from, and the number of records read."""
        if not partitions:
            return {}, 0
        reader = Consumer(
            {
                **self.base,
                "group.id": f"{self.config.group_id}.replay",  # never joins: assigned by hand
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "fetch.max.bytes": 64 * 1024 * 1024,
                "log_level": 3,
            }
        )
        try:
            ends: dict[int, int] = {}
            targets: dict[int, int] = {}  # partition -> offset to read up to (exclusive)
            to_end: set[int] = set()  # partitions without a committed offset
            positions: dict[int, int] = {}
            for tp in partitions:
                low, high = reader.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=15)
                target = high if tp.offset < 0 else tp.offset
                if target <= low:
                    ends[tp.partition] = max(target, low)
                    continue
                targets[tp.partition], positions[tp.partition] = target, low
                if tp.offset < 0:
                    to_end.add(tp.partition)
            reader.assign([TopicPartition(topic, p, positions[p]) for p in targets])
            count, idle_since = 0, time.monotonic()
            while targets:
                for msg in reader.consume(1000, timeout=0.2):
                    error = msg.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            continue
                        raise KafkaException(error)
                    partition, offset = msg.partition() or 0, msg.offset() or 0
                    if partition not in targets or offset >= targets[partition]:
                        continue
                    count += 1
                    fact = self._fact(msg)
                    if fact is not None:
                        _store(
                            sagas,
                            fact.transfer_id,
                            react(sagas.get(fact.transfer_id), fact, 0.0, self.policy).saga,
                        )
                for tp in reader.position([TopicPartition(topic, p) for p in targets]):
                    if tp.offset >= 0 and tp.offset != positions[tp.partition]:
                        positions[tp.partition], idle_since = tp.offset, time.monotonic()
                    if positions[tp.partition] >= targets[tp.partition]:
                        ends[tp.partition] = (
                            positions[tp.partition] if tp.partition in to_end else targets[tp.partition]
                        )
                        del targets[tp.partition]
                idle = time.monotonic() - idle_since
                if idle > 3:
                    for partition in to_end & set(targets):  # an open transaction: read on live from here
                        ends[partition] = positions[partition]
                        del targets[partition]
                if targets and idle > 120:
                    # A committed offset is always after a record this group consumed: a replay
                    # that cannot reach it must not go on with a partial state.
                    raise TimeoutError(f"{topic} partitions {sorted(targets)} did not reach {targets}")
            return ends, count
        finally:
            reader.close()

    # -- the loop ------------------------------------------------------------------------

    # run() is TransactionalLoop's; these are its hooks.

    def _next_turn(self) -> Callable[[], None]:
        """Every turn, its poll too, runs inside run()'s guard: a KafkaException raised in the poll
        (an assignment's callback runs there) replaces the producer and the member."""
        return self._turn

    def _turn(self) -> None:
        messages = self._without_client_errors(
            next_batch(self.consumer, self.config.max_batch, self.config.poll_timeout_s)
        )
        now = self.clock()
        due = self._due(now)
        if messages or due:
            self.process(messages, due, now)

    def _close_member(self) -> None:
        self.consumer.close()
        log.info("transfer process stopped")

    def _rejoin(self) -> None:
        """A new group member in place of the current one, which is closed (its partitions are
        revoked: _on_revoke forgets their sagas); the new one's assignment rebuilds the sagas from
        the log (_on_assign)."""
        old, self.consumer = self.consumer, self._new_consumer()
        try:
            old.close()
        except (KafkaException, RuntimeError) as exc:
            log.warning("closing the old group member failed (%s); the group drops it after its session", exc)
        self.sagas, self.owned = {}, set()
        self.ready.clear()
        self._subscribe()

    def _subscribe(self) -> None:
        self.consumer.subscribe(
            [self.transfer_events, self.facts, self.account_events, self.account_results],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )

    def _without_client_errors(self, messages: list[Message]) -> list[Message]:
        """The records; a broker outage shows as non-fatal client errors (all brokers down, a
        transport error), which librdkafka recovers from by itself: logged and passed over. One
        that no waiting fixes (not authorized) is raised."""
        records = []
        for msg in messages:
            error = msg.error()
            if error is None or error.code() == KafkaError._PARTITION_EOF or error.fatal():
                records.append(msg)  # records, and what process() decides about
            elif unrecoverable(error):
                raise KafkaException(error)
            else:
                self.quiet.warning(
                    f"consume:{error.code()}",
                    "Kafka client error (%s); carrying on, librdkafka reconnects",
                    error,
                )
        return records

    def _due(self, now: float) -> list[str]:
        """Transfers whose pending step timed out (looked for at most every quarter timeout)."""
        if now < self._next_check:
            return []
        self._next_check = now + min(1.0, self.policy.timeout_s / 4)
        due = [t for t, s in self.sagas.items() if s.deadline <= now]
        stuck = sum(1 for s in self.sagas.values() if s.stuck)
        self.counters.in_flight, self.counters.stuck = len(self.sagas), stuck
        return due

    def process(self, messages: list[Message], due: Iterable[str], now: float) -> None:
        """One transaction: the reactions to a batch and to the timed-out transfers, with the
        consumed offsets. All or nothing: an abortable failure (a delivery that timed out, a
        transaction the broker refused) aborts it and rewinds to the batch's first offsets, so it
        is read and decided again; a fatal one (or an abort that does not go through) is raised
        for run() to replace the producer."""
        batch = _Batch()
        self.producer.begin_transaction()  # local: raises only when the producer is fatal
        try:
            for msg in messages:
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(error)
                self._take(msg, batch, now)
            for transfer_id in due:
                saga = self._saga(batch, transfer_id)
                if saga is not None:
                    self._apply(batch, transfer_id, timeout(saga, now, self.policy))
            for topic, partition, key, value, headers in batch.records:
                self.producer.produce(
                    topic,
                    key=key,
                    value=value,
                    partition=partition,
                    headers=headers,
                    on_delivery=self._on_delivery(batch),
                )
                self.producer.poll(0)
            # message.timeout.ms is the transaction timeout, so every record is acknowledged or
            # failed by then; a flush that outlasts it is a producer stuck, and the batch is
            # aborted like one whose records failed.
            flush_s = self.config.transaction_timeout_ms / 1000 + 2
            if left := self.producer.flush(flush_s):
                batch.delivery_errors.append(
                    KafkaError(KafkaError._MSG_TIMED_OUT, f"{left} records unacknowledged in {flush_s:.0f}s")
                )
            if batch.delivery_errors:
                raise KafkaException(batch.delivery_errors[0])
            if batch.next_offsets:
                offsets = [TopicPartition(t, p, o) for (t, p), o in batch.next_offsets.items()]
                group = self.consumer.consumer_group_metadata()
                self.patience.retry(
                    "sending the consumed offsets",
                    lambda: self.bounded(
                        "send_offsets_to_transaction",
                        lambda: self.producer.send_offsets_to_transaction(offsets, group, CALL_TIMEOUT_S),
                    ),
                    attempts=6,  # then a new producer, which waits for Kafka as long as it takes
                )
            self._maybe_crash(batch)
            self._commit_transaction()
        except KafkaException as exc:
            error = error_of(exc)
            if (
                error is None
                or error.fatal()
                or unrecoverable(error)
                or not (error.txn_requires_abort() or batch.delivery_errors)
            ):
                # Fatal, or a commit or offsets that did not go through in a few tries (it may
                # have happened: the log says): run() replaces the producer and rebuilds the
                # sagas from the log; not authorized: run() raises (the process exits).
                raise
            log.warning("transaction aborted (%s); the batch will be read again", error)
            self._abort_transaction()
            self.counters.aborted += 1
            self._rewind(batch.first_offsets)
            return
        self._merge(batch)  # only now: the state in memory never runs ahead of the log

    def _maybe_crash(self, batch: _Batch) -> None:
        after = self.config.exit_before_commit_after
        if after and self.counters.transactions >= after and batch.records:
            log.critical(
                "fault injection: exiting after producing %d records, before the commit", len(batch.records)
            )
            logging.shutdown()
            os._exit(75)

    def _merge(self, batch: _Batch) -> None:
        for transfer_id, saga in batch.sagas.items():
            if self.transfer_partition(transfer_id) not in self.owned:
                continue  # revoked meanwhile: the new owner rebuilds it
            _store(self.sagas, transfer_id, saga)
        c = self.counters
        c.transactions += 1
        c.notes.update(batch.notes)
        c.sent.update(batch.sent)
        c.forwarded += batch.forwarded
        for seconds in batch.latencies:
            c.observe_completion(seconds)

    def _rewind(self, first_offsets: dict[tuple[str, int], int]) -> None:
        assigned = {(tp.topic, tp.partition) for tp in self.consumer.assignment()}
        for (topic, partition), offset in first_offsets.items():
            if (topic, partition) in assigned:
                self.consumer.seek(TopicPartition(topic, partition, offset))

    @staticmethod
    def _on_delivery(batch: _Batch) -> Callable[[KafkaError | None, Message], None]:
        def callback(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                batch.delivery_errors.append(err)

        return callback

    # -- one record ----------------------------------------------------------------------

    def _take(self, msg: Message, batch: _Batch, now: float) -> None:
        topic, partition, offset = msg.topic() or "", msg.partition() or 0, msg.offset() or 0
        keyed = topic in (self.transfer_events, self.facts)
        if keyed and partition not in self.owned:
            return  # revoked while fetched; the new owner reads it
        batch.first_offsets.setdefault((topic, partition), offset)
        batch.next_offsets[(topic, partition)] = offset + 1
        fact = self._fact(msg)
        if fact is None:
            return
        if not keyed:
            # An account's answer about a transfer: to the transfer's partition of the facts.
            target = self.transfer_partition(fact.transfer_id)
            source: Headers = [("source", f"{topic}:{partition}:{offset}".encode())]
            batch.records.append((self.facts, target, fact.transfer_id, msg.value() or b"", source))
            batch.forwarded += 1
            if target not in self.owned:
                return
        self._react(batch, fact, now)

    def _fact(self, msg: Message) -> Fact | None:
        try:
            decoded = self.codec.decode(msg.value() or b"")
            if msg.topic() == self.transfer_events:
                return transfer_fact(decoded.name, decoded.record)
            return account_fact(decoded.name, decoded.record)
        except (CodecError, KeyError, TypeError, AttributeError) as exc:
            log.error("cannot read %s[%s]@%s: %s", msg.topic(), msg.partition(), msg.offset(), exc)
            self.counters.undecodable += 1
            return None

    def _saga(self, batch: _Batch, transfer_id: str) -> Saga | None:
        if transfer_id in batch.sagas:
            return batch.sagas[transfer_id]
        return self.sagas.get(transfer_id)

    def _react(self, batch: _Batch, fact: Fact, now: float) -> None:
        saga = self._saga(batch, fact.transfer_id)
        if isinstance(fact, Recorded) and fact.status == "completed" and saga is not None:
            batch.latencies.append(max(0, fact.occurred_at_ms - saga.requested_at_ms) / 1000)
        self._apply(batch, fact.transfer_id, react(saga, fact, now, self.policy))

    def _apply(self, batch: _Batch, transfer_id: str, reaction: Reaction) -> None:
        batch.sagas[transfer_id] = reaction.saga
        batch.notes.update(reaction.notes)
        for send in reaction.sends:
            batch.records.append(self._command(send))
            batch.sent[send.step] += 1
        if reaction.decision is not None:
            batch.records.append(self._decision(reaction.decision))

    def _command(self, send: Send) -> tuple[str, int, str, bytes, Headers]:
        topic = self.command_topics[send.aggregate]
        record = {
            "command_id": send.command_id,
            "aggregate_id": send.aggregate_id,
            "expected_version": None,
            "correlation_id": send.transfer_id,
            "issued_at": datetime.now(UTC),
            **send.payload,
        }
        value = self.codec.encode(send.name, record)
        partition = partition_for(send.aggregate_id, self.partitions[topic])
        headers: Headers = [(COMMAND_ID_HEADER, send.command_id.encode())]
        if send.actor is not None:
            subject, owner_id = send.actor
            headers.append((ACTOR_HEADER, subject.encode()))
            if owner_id:
                headers.append((ACTOR_OWNER_ID_HEADER, owner_id.encode()))
        return topic, partition, send.aggregate_id, value, headers

    def _decision(self, decision: GaveUp) -> tuple[str, int, str, bytes, Headers]:
        """A give-up is recorded as the FailTransfer it sent, on the facts topic, so a restart
        knows it (and refunds the debit if it lands after all)."""
        transfer_id = decision.transfer_id
        record = {
            "command_id": command_id(transfer_id, "fail"),
            "aggregate_id": transfer_id,
            "expected_version": None,
            "correlation_id": transfer_id,
            "issued_at": datetime.now(UTC),
            "reason": "timed_out",
            "detail": decision.detail,
        }
        value = self.codec.encode("FailTransfer", record)
        return self.facts, self.transfer_partition(transfer_id), transfer_id, value, []


def _store(sagas: dict[str, Saga], transfer_id: str, saga: Saga | None) -> None:
    if saga is None:
        sagas.pop(transfer_id, None)
    else:
        sagas[transfer_id] = saga
