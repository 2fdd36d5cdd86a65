"""One batch of commands through one aggregate's single writer, without the Kafka loop around it:
decode -> route -> handle (domain) -> encode -> produce, then results and snapshots once the
events' positions are known. Runs against any producer-like outbox (Kafka's, or a fake in tests)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from producers.domain.actor import Actor
from producers.engine.aggregate import Aggregate
from producers.engine.handler import (
    Accepted,
    AlreadyHandled,
    CommandEnvelope,
    Outcome,
    Rejected,
    Stream,
    handle,
    request_hash,
)
from producers.engine.idempotency import IdempotencyMemory
from producers.engine.wire import (
    CHECKPOINT_PREFIX,
    UnknownMessageType,
    command_from_record,
    event_to_record,
    rejection_reasons,
    snapshot_to_record,
)
from schemas.codec import Codec, CodecError
from schemas.headers import (
    ACTOR_HEADER,
    ACTOR_OWNER_ID_HEADER,
    COMMAND_ID_HEADER,
    MISROUTED_FROM_HEADER,
    header,
    text_headers,
)
from schemas.keys import event_key, partition_for
from schemas.positions import Position
from schemas.topics import commands_topic, events_topic, results_topic, snapshots_topic

log = logging.getLogger(__name__)


def _actor(headers: dict[str, str]) -> Actor | None:
    subject = headers.get(ACTOR_HEADER)
    return Actor(subject, headers.get(ACTOR_OWNER_ID_HEADER) or None) if subject else None


_ids: list[str] = []
os.register_at_fork(after_in_child=_ids.clear)  # a forked child must not hand out its parent's ids
# The variant digit: its two high bits are RFC 4122's 10, its two low bits stay random.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def new_event_id() -> str:
    """A random (version 4) UUID as text, as str(uuid.uuid4()) gives, without a UUID object per
    event: the random bytes are read 256 ids at a time (uuid4 was 7% of the processor's CPU)."""
    if not _ids:
        digits = os.urandom(16 * 256).hex()
        for i in range(0, len(digits), 32):
            h = digits[i : i + 32]
            _ids.append(f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}")
    return _ids.pop()


class Inbound(Protocol):
    """A consumed command (confluent-kafka's Message has this shape)."""

    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> Any: ...
    def topic(self) -> str | None: ...


class Outbox(Protocol):
    """Where records go inside the open transaction (confluent-kafka's Producer has this shape)."""

    def produce(
        self,
        topic: str,
        *,
        value: str | bytes | None = None,
        key: str | bytes | None = None,
        partition: int = -1,
        on_delivery: Callable[[Any, Any], None] | None = None,
        headers: Any = None,
    ) -> None: ...


@dataclass
class PartitionState:
    """What the single writer of one partition knows: streams, and the idempotency memory."""

    streams: dict[str, Stream] = field(default_factory=dict)
    handled: IdempotencyMemory = field(default_factory=IdempotencyMemory)
    dirty: set[str] = field(default_factory=set)  # aggregates changed since the checkpoint
    events_since_checkpoint: int = 0


@dataclass
class Pending:
    """One command's answer within the open transaction; positions arrive with the acks."""

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
class Batch:
    """Working copies for one transaction; merged into the partitions' state only on commit."""

    streams: dict[str, Stream] = field(default_factory=dict)
    handled: dict[str, Pending] = field(default_factory=dict)
    pending: list[Pending] = field(default_factory=list)
    first_offsets: dict[int, int] = field(default_factory=dict)
    next_offsets: dict[int, int] = field(default_factory=dict)
    event_ends: dict[int, int] = field(default_factory=dict)  # partition -> last event offset + 1
    appended: dict[int, int] = field(default_factory=dict)  # partition -> events appended
    checkpointed: set[int] = field(default_factory=set)  # partitions snapshotted in this batch
    delivery_errors: list[Any] = field(default_factory=list)


def _now() -> datetime:
    return datetime.now(UTC)


class SingleWriter:
    """The write logic of one aggregate type over the partitions this member owns."""

    def __init__(
        self,
        aggregate: Aggregate,
        codec: Codec,
        partitions: int,
        outbox: Outbox,
        snapshot_every: int,
        topics: str | None = None,
    ) -> None:
        self.aggregate, self.codec, self.partitions = aggregate, codec, partitions
        self.outbox, self.snapshot_every = outbox, snapshot_every
        name = topics or aggregate.name  # <kind>.<name>
        self.commands, self.events = commands_topic(name), events_topic(name)
        self.results, self.snapshots = results_topic(name), snapshots_topic(name)
        self.owned: dict[int, PartitionState] = {}
        self.reason_codes = rejection_reasons(codec)

    # -- one command ---------------------------------------------------------------------

    def handle(self, msg: Inbound, batch: Batch) -> None:
        partition, offset = msg.partition() or 0, msg.offset() or 0
        if partition not in self.owned:
            return  # revoked while fetched; the new owner reads it again
        batch.first_offsets.setdefault(partition, offset)
        batch.next_offsets[partition] = offset + 1
        try:
            decoded = self.codec.decode(msg.value() or b"")
            headers = text_headers(msg)
            envelope, command = command_from_record(
                self.aggregate, decoded.name, decoded.record, actor=_actor(headers)
            )
        except (CodecError, UnknownMessageType, KeyError, TypeError) as exc:
            self._unreadable(msg, exc, batch)
            return
        digest = request_hash(envelope, command)
        home = partition_for(envelope.aggregate_id, self.partitions)
        if home != partition:
            self._forward(msg, home)
            return
        stream = self._stream(batch, partition, envelope.aggregate_id)
        misrouted_from = headers.get(MISROUTED_FROM_HEADER)
        if misrouted_from is not None:
            detail = (
                f"sent to partition {misrouted_from}; commands of this aggregate go to partition "
                f"{partition} (murmur2(aggregate_id) % {self.partitions})"
            )
            self._answer(
                batch,
                envelope,
                partition,
                False,
                stream.version,
                digest,
                reason="wrong_partition",
                detail=detail,
                remember=False,
            )
            return
        earlier = batch.handled.get(envelope.command_id)
        previous = earlier.outcome() if earlier else self.owned[partition].handled.get(envelope.command_id)
        match handle(self.aggregate, stream, envelope, command, previous, digest):
            case AlreadyHandled(previous):
                if earlier is not None:
                    # Same id twice in one batch: answer with the first one's outcome, whose
                    # position arrives with the broker's ack.
                    batch.pending.append(earlier)
                else:
                    replay = self._answer(
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
                self._answer(
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
                self._append(batch, envelope, partition, stream, events, first_version, digest)

    def _append(
        self,
        batch: Batch,
        envelope: CommandEnvelope,
        partition: int,
        stream: Stream,
        events: list[Any],
        first_version: int,
        digest: str,
    ) -> None:
        last_version = first_version + len(events) - 1
        pending = self._answer(batch, envelope, partition, True, last_version, digest)
        occurred_at = _now()
        for version, event in enumerate(events, start=first_version):
            name, record = event_to_record(
                self.aggregate,
                event,
                event_id=new_event_id(),
                aggregate_id=envelope.aggregate_id,
                version=version,
                occurred_at=occurred_at,
                command=envelope,
            )
            stream.apply(self.aggregate, event, version)  # now, so the next command of this batch sees it
            self.outbox.produce(
                self.events,
                key=event_key(envelope.aggregate_id, version),
                value=self.codec.encode(name, record),
                partition=partition,
                on_delivery=self._on_event_delivered(batch, pending if version == last_version else None),
            )
        batch.appended[partition] = batch.appended.get(partition, 0) + len(events)
        self.owned[partition].dirty.add(envelope.aggregate_id)

    def _stream(self, batch: Batch, partition: int, aggregate_id: str) -> Stream:
        """This batch's working copy of an aggregate's stream (made on first use)."""
        stream = batch.streams.get(aggregate_id)
        if stream is None:
            known = self.owned[partition].streams.get(aggregate_id)
            stream = Stream(known.state, known.version) if known else Stream()
            batch.streams[aggregate_id] = stream
        return stream

    def _answer(
        self,
        batch: Batch,
        envelope: CommandEnvelope,
        partition: int,
        accepted: bool,
        version: int,
        digest: str | None,
        *,
        reason: str | None = None,
        detail: str | None = None,
        remember: bool = True,
    ) -> Pending:
        pending = Pending(
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

    def _forward(self, msg: Inbound, home: int) -> None:
        """A command on another partition than its aggregate's is passed, in this transaction, to
        the aggregate's partition, whose single writer answers it (on the aggregate's results
        partition, with the aggregate's real version) as `wrong_partition`."""
        headers = [(k, v) for k, v in (msg.headers() or []) if k != MISROUTED_FROM_HEADER]
        self.outbox.produce(
            self.commands,
            key=msg.key(),
            value=msg.value(),
            partition=home,
            headers=[*headers, (MISROUTED_FROM_HEADER, str(msg.partition()).encode())],
        )

    def _unreadable(self, msg: Inbound, exc: Exception, batch: Batch) -> None:
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
            Pending(
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
    def _on_event_delivered(batch: Batch, pending: Pending | None) -> Callable[[Any, Any], None]:
        def callback(err: Any, msg: Any) -> None:
            if err is not None:
                batch.delivery_errors.append(err)
                return
            partition, offset = msg.partition() or 0, msg.offset() or 0
            batch.event_ends[partition] = max(batch.event_ends.get(partition, 0), offset + 1)
            if pending is not None:
                pending.position = Position(partition, offset).token()

        return callback

    # -- after the events are acknowledged -----------------------------------------------

    def finish(self, batch: Batch) -> None:
        """Results (now with positions) and, every `snapshot_every` events, snapshots."""
        completed_at = _now()
        for pending in batch.pending:
            reason = pending.reason
            record = {
                "command_id": pending.command_id,
                "aggregate_id": pending.aggregate_id,
                "correlation_id": pending.correlation_id,
                "status": "ACCEPTED" if pending.accepted else "REJECTED",
                "version": pending.version,
                "position": pending.position,
                "reason": reason,
                "reason_code": None if reason is None else reason if reason in self.reason_codes else "other",
                "detail": pending.detail,
                "completed_at": completed_at,
                "request_hash": pending.digest,
            }
            self.outbox.produce(
                self.results,
                key=pending.command_id,
                value=self.codec.encode("CommandResult", record),
                partition=pending.partition,
            )
        self._snapshot(batch, completed_at)

    def _snapshot(self, batch: Batch, taken_at: datetime) -> None:
        """Snapshots of the changed aggregates and a checkpoint, in this transaction, so a new
        owner reads only the events after the checkpoint."""
        for partition, appended in batch.appended.items():
            state = self.owned[partition]
            if state.events_since_checkpoint + appended < self.snapshot_every:
                continue
            for aggregate_id in state.dirty:
                stream = batch.streams.get(aggregate_id) or state.streams.get(aggregate_id)
                if stream is None or stream.state is None:
                    continue
                self.outbox.produce(
                    self.snapshots,
                    key=aggregate_id,
                    partition=partition,
                    value=self.codec.encode(
                        self.aggregate.snapshot, snapshot_to_record(aggregate_id, stream, taken_at)
                    ),
                )
            checkpoint = {
                "partition": partition,
                "events_offset": batch.event_ends[partition],
                "taken_at": taken_at,
            }
            self.outbox.produce(
                self.snapshots,
                key=f"{CHECKPOINT_PREFIX}{partition}",
                partition=partition,
                value=self.codec.encode("PartitionCheckpoint", checkpoint),
            )
            batch.checkpointed.add(partition)

    # -- after the commit ----------------------------------------------------------------

    def merge(self, batch: Batch) -> None:
        for aggregate_id, stream in batch.streams.items():
            state = self.owned.get(partition_for(aggregate_id, self.partitions))
            if state is not None:
                state.streams[aggregate_id] = stream
        now = time.time()
        for pending in batch.pending:
            state = self.owned.get(pending.partition)
            if state is not None and pending.remember:
                state.handled.remember(pending.command_id, pending.outcome(), now)
        for partition, appended in batch.appended.items():
            state = self.owned.get(partition)
            if state is None:
                continue
            if partition in batch.checkpointed:
                state.dirty, state.events_since_checkpoint = set(), 0
            else:
                state.events_since_checkpoint += appended
