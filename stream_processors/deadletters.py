"""Dead letters: reading `deadletters.<aggregate>` and re-driving letters into a view once their
cause is fixed, each applied exactly once (marked by its source coordinates in the generation)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aredis
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from schemas.codec import Codec, DecodeError
from schemas.kafka_security import kafka_config
from schemas.topics import dead_letters_topic
from stream_processors import layout
from stream_processors.log_admin import LogAdmin
from stream_processors.store import ProjectedEvent
from stream_processors.view_writer import ViewWriter
from stream_processors.views.base import ViewSpec


@dataclass(frozen=True)
class Letter:
    partition: int  # of the dead-letter topic
    offset: int
    written_at: datetime
    view: str
    error: str
    source: str  # "<topic>:<partition>:<offset>" of the poison event
    value: bytes


def read_letters(bootstrap: str, aggregate: str) -> list[Letter]:
    """Every dead letter of the aggregate, oldest first per partition."""
    topic = dead_letters_topic(aggregate)
    ends = {p: high for p, (_, high) in LogAdmin(bootstrap).watermarks(topic).items()}
    consumer = Consumer(
        {
            **kafka_config(bootstrap),
            "group.id": "unused",  # assign() only; nothing is committed
            "enable.auto.commit": False,
            "log_level": 3,
        }
    )
    letters: list[Letter] = []
    try:
        todo = {p for p, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in todo])
        while todo:
            for message in consumer.consume(500, timeout=1):
                if message.error() is not None:
                    continue
                partition, offset = message.partition() or 0, message.offset() or 0
                raw_headers: Any = message.headers() or []
                headers = {k: (v or b"").decode() for k, v in raw_headers}
                letters.append(
                    Letter(
                        partition,
                        offset,
                        datetime.fromtimestamp(message.timestamp()[1] / 1000, UTC),
                        headers.get("view", ""),
                        headers.get("error", ""),
                        ":".join(headers.get(f"source.{k}", "?") for k in ("topic", "partition", "offset")),
                        message.value() or b"",
                    )
                )
                if offset + 1 >= ends[partition]:
                    todo.discard(partition)
            for tp in consumer.position([TopicPartition(topic, p) for p in list(todo)]):
                if tp.offset >= ends[tp.partition]:
                    todo.discard(tp.partition)
    finally:
        consumer.close()
    return sorted(letters, key=lambda letter: (letter.partition, letter.offset))


@dataclass
class ReplayReport:
    applied: int = 0
    already_applied: int = 0
    still_failing: list[tuple[Letter, str]] = field(default_factory=list)
    other_views: int = 0


def replay(letters: list[Letter], spec: ViewSpec, redis_url: str, codec: Codec) -> ReplayReport:
    """Projects each letter of this view with today's code into the current generation, once."""
    return asyncio.run(_replay(letters, spec, redis_url, codec))


async def _replay(letters: list[Letter], spec: ViewSpec, redis_url: str, codec: Codec) -> ReplayReport:
    client = aredis.Redis.from_url(redis_url)
    current = await client.get(layout.current(spec.name))
    if current is None:
        await client.aclose()
        raise ValueError(f"the {spec.name} view has no generation yet")
    generation = int(current)
    writer, report = ViewWriter(client, spec.name, generation), ReplayReport()
    try:
        for letter in letters:
            if letter.view != spec.name:
                report.other_views += 1
                continue
            try:
                decoded = codec.decode(letter.value)
                ops = spec.project(decoded.name, decoded.record)
            except (DecodeError, ValueError, KeyError, TypeError) as exc:
                report.still_failing.append((letter, f"{type(exc).__name__}: {exc}"))
                continue
            if await writer.apply_once(letter.source, ops):
                report.applied += 1
                event = decoded.record
                partition, offset = (int(x) for x in letter.source.split(":")[-2:])
                await writer.notify(
                    [ProjectedEvent(partition, offset, ops, event.get("aggregate_id"), event.get("version"))]
                )
            else:
                report.already_applied += 1
    finally:
        await client.aclose()
    return report
