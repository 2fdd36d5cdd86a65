"""One batch of raw Kafka records -> decoded events -> Redis ops -> one atomic write with the
checkpoint; poison records go to the dead letters first, change notifications after."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from schemas.codec import Codec, DecodeError
from stream_processors.store import ProjectedEvent, ViewStore
from stream_processors.views.base import Projection

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RawRecord:
    topic: str
    partition: int
    offset: int
    value: bytes


@dataclass(frozen=True)
class DeadLetter:
    record: RawRecord
    view: str
    error: str

    @property
    def key(self) -> bytes:
        return f"{self.record.topic}:{self.record.partition}:{self.record.offset}".encode()

    @property
    def headers(self) -> list[tuple[str, bytes]]:
        """The letter's value is the poison record's bytes; these say where it came from and why."""
        return [
            ("error", self.error.encode()[:4000]),
            ("view", self.view.encode()),
            ("source.topic", self.record.topic.encode()),
            ("source.partition", str(self.record.partition).encode()),
            ("source.offset", str(self.record.offset).encode()),
        ]


DeadLetterSink = Callable[[DeadLetter], Awaitable[None]]


@dataclass
class Counters:
    applied: int = 0
    skipped: int = 0  # redelivered, at or below the checkpoint
    dead_letters: int = 0
    batches: int = 0
    last_batch_size: int = 0
    last_batch_seconds: float = 0.0
    checkpoints: dict[int, int] = field(default_factory=dict)


class Projector:
    """Decodes and projects each record; a poison record is dead-lettered, never fatal."""

    def __init__(
        self,
        view: str,
        codec: Codec,
        projection: Projection,
        writer: ViewStore,
        dead_letters: DeadLetterSink,
    ) -> None:
        self.view = view
        self.codec = codec
        self.projection = projection
        self.writer = writer
        self.dead_letters = dead_letters
        self.counters = Counters()

    def _project(self, record: RawRecord) -> tuple[ProjectedEvent, DeadLetter | None]:
        try:
            decoded = self.codec.decode(record.value)
            ops = self.projection(decoded.name, decoded.record)
        except (DecodeError, ValueError, KeyError, TypeError) as exc:
            error = f"{type(exc).__name__}: {exc}"
            # Its offset still advances the checkpoint: the letter keeps the bytes for a replay.
            return ProjectedEvent(record.partition, record.offset, []), DeadLetter(record, self.view, error)
        event = decoded.record
        return ProjectedEvent(
            record.partition, record.offset, ops, event.get("aggregate_id"), event.get("version")
        ), None

    async def handle(self, records: Sequence[RawRecord]) -> list[ProjectedEvent]:
        began = time.perf_counter()
        projected, letters, skipped = [], [], 0
        known = self.writer.known_checkpoints
        for record in records:
            if record.offset <= known.get(record.partition, -1):
                skipped += 1  # redelivered (a rebalance, a restart): not even decoded
                continue
            event, letter = self._project(record)
            projected.append(event)
            if letter is not None:
                letters.append(letter)
        for letter in letters:  # acknowledged by Kafka before the checkpoint passes them
            log.error(
                "dead letter: %s[%s]@%s: %s",
                letter.record.topic,
                letter.record.partition,
                letter.record.offset,
                letter.error,
            )
            await self.dead_letters(letter)
        applied = await self._apply(projected)
        await self._notify(applied)
        counters = self.counters
        counters.applied += len(applied)
        counters.skipped += skipped + len(projected) - len(applied)
        counters.dead_letters += len(letters)
        counters.batches += 1
        counters.last_batch_size = len(records)
        counters.last_batch_seconds = time.perf_counter() - began
        for event in projected:
            counters.checkpoints[event.partition] = max(
                counters.checkpoints.get(event.partition, -1), event.offset
            )
        return applied

    async def _apply(self, projected: list[ProjectedEvent]) -> list[ProjectedEvent]:
        delay, began = 0.1, time.monotonic()
        while True:
            try:
                applied = await self.writer.apply(projected)
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                # Never give up on a batch, never skip it: the checkpoints (and the group offsets
                # that follow them) stay where they are until it is applied. A batch whose EXEC
                # ran but whose answer was lost is skipped by its checkpoint on the next try.
                log.warning(
                    "%s view: Redis unavailable (%s); batch of %d events not applied, retrying in %.1fs",
                    self.view, exc, len(projected), delay,
                )  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if delay > 0.1:
                waited = time.monotonic() - began
                log.warning("%s view: Redis answers again; batch applied after %.1fs", self.view, waited)
            return applied

    async def _notify(self, applied: list[ProjectedEvent]) -> None:
        try:
            await self.writer.notify(applied)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            log.warning("change notifications lost (%s); the view itself is applied", exc)
