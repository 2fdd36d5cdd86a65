"""One batch of raw Kafka records -> decoded events -> Redis ops -> one atomic write with the checkpoint."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from schemas.codec import Codec, DecodeError
from stream_processors.projections.ops import Op
from stream_processors.view_writer import ProjectedEvent, ViewWriter

log = logging.getLogger(__name__)

Projection = Callable[[str, dict[str, Any]], list[Op]]


@dataclass(frozen=True)
class RawRecord:
    partition: int
    offset: int
    value: bytes


class Projector:
    """Decodes and projects each record; a poison record is reported and skipped, never fatal."""

    def __init__(self, codec: Codec, projection: Projection, writer: ViewWriter) -> None:
        self.codec = codec
        self.projection = projection
        self.writer = writer
        self.applied = 0
        self.poisoned = 0

    def _project(self, record: RawRecord) -> ProjectedEvent:
        try:
            decoded = self.codec.decode(record.value)
            ops = self.projection(decoded.name, decoded.record)
        except (DecodeError, ValueError, KeyError, TypeError) as exc:
            # Dead-letter publishing arrives with the projections issue; until then the poison
            # record is logged with its coordinates and its offset still advances the checkpoint.
            self.poisoned += 1
            log.error("poison event at partition %s offset %s: %s", record.partition, record.offset, exc)
            ops = []
        return ProjectedEvent(record.partition, record.offset, ops)

    async def handle(self, records: Sequence[RawRecord]) -> int:
        projected = [self._project(r) for r in records]
        delay = 0.1
        while True:
            try:
                applied = await self.writer.apply(projected)
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                # Never give up on a batch: faust must not commit offsets we have not applied.
                log.warning("redis unavailable (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self.applied += applied
            return applied
