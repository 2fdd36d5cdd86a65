"""A rebuild worker: catches a generation up with a backlog of its source partitions, then keeps
following the log until the rebuild stops it.

It applies records through the same Projector and ViewWriter as the faust projector (so the same
exactly-once effect, checkpoints and dead letters), but reads with a plain confluent-kafka
consumer on assigned partitions, without a consumer group's rebalances and faust's services.
Workers split the partitions by
number (CATCH_UP_PARTITIONS), so they need no group membership; the running projectors that take
the generation over after the flip resume after its checkpoints.

Run by `stream_processors.rebuild.Workers`: PROJECTOR_VIEW, PROJECTOR_GENERATION and
CATCH_UP_PARTITIONS name the work; KAFKA_BOOTSTRAP_SERVERS and REDIS_URL where.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aredis
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from schemas.kafka_security import kafka_config
from schemas.schema_log import codec_reading_the_log
from schemas.topics import dead_letters_topic, events_topic
from stream_processors.projector import DeadLetter, Projector, RawRecord
from stream_processors.read_committed import commit_offset
from stream_processors.recovery import group_id
from stream_processors.settings import ProjectorSettings
from stream_processors.view_writer import ViewWriter
from stream_processors.views.registry import view_spec

log = logging.getLogger("catch_up")
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)
T = TypeVar("T")


class CatchUpSettings(ProjectorSettings):
    catch_up_partitions: str  # "0,2,4": the source partitions this worker applies


async def run(settings: CatchUpSettings) -> None:
    spec = view_spec(settings.projector_view)
    source = settings.aggregate or spec.source
    generation = settings.projector_generation
    if generation is None:
        raise SystemExit("a catch-up worker needs PROJECTOR_GENERATION")
    topic = events_topic(source)
    partitions = [int(p) for p in settings.catch_up_partitions.split(",") if p.strip()]
    client = aredis.Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.projector_redis_timeout_s,
        socket_connect_timeout=settings.projector_redis_timeout_s,
    )
    writer = ViewWriter(client, spec.name, generation)
    producer = Producer(kafka_config(settings.kafka_bootstrap_servers, {"acks": "all", "log_level": 3}))

    async def send_dead_letter(letter: DeadLetter) -> None:
        producer.produce(
            dead_letters_topic(source),
            key=letter.key,
            value=letter.record.value,
            partition=letter.record.partition,
            headers=list(letter.headers),
        )
        if producer.flush(30) != 0:  # acknowledged before the checkpoint moves past the poison event
            raise RuntimeError("a dead letter was not acknowledged")

    projector = Projector(
        spec.name,
        codec_reading_the_log(settings.kafka_bootstrap_servers),
        spec.project,
        writer,
        send_dead_letter,
    )
    consumer = Consumer(
        {
            **kafka_config(settings.kafka_bootstrap_servers),
            "group.id": group_id(source, spec.name, generation),  # only to read its start offsets
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "fetch.max.bytes": 52_428_800,
            "log_level": 3,
        }
    )
    committed = {
        tp.partition: tp.offset
        for tp in consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=30)
    }
    done = await _retrying(lambda: writer.load_checkpoints(partitions), "checkpoints not read")
    start = {
        p: done[p] + 1 if p in done else committed[p] if committed.get(p, -1) >= 0 else OFFSET_BEGINNING
        for p in partitions
    }
    consumer.assign([TopicPartition(topic, p, offset) for p, offset in start.items()])
    log.info("%s g%d: applying partitions %s from %s", spec.name, generation, partitions, start)

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    next_check = 0.0
    highest: dict[int, int] = {}  # partition -> highest offset consumed
    try:
        while not stopping.is_set():
            batch = consumer.consume(settings.projector_batch_size, timeout=0.2)
            records = [
                RawRecord(m.topic() or topic, m.partition() or 0, m.offset() or 0, m.value() or b"")
                for m in batch
                if m.error() is None
            ]
            if records:
                await projector.handle(records)
                for record in records:
                    highest[record.partition] = max(highest.get(record.partition, -1), record.offset)
                await commit_applied(consumer, topic, writer, highest)
            else:
                await asyncio.sleep(0)  # let a signal handler run
            if time.monotonic() >= next_check:  # notify readers only once queries read this generation
                next_check = time.monotonic() + 1
                # Also the partitions that only got markers or aborted records (no batch of theirs).
                await commit_applied(consumer, topic, writer, {p: highest.get(p, -1) for p in partitions})
                try:
                    writer.serving = (await writer.generation_state()).current == generation
                except REDIS_DOWN as exc:
                    log.warning("Redis unavailable (%s): generation state not read", exc)
    finally:
        consumer.close()
        producer.flush(10)
        await client.aclose()
        log.info("%s g%d: stopped; %s", spec.name, generation, projector.counters)


async def commit_applied(consumer: Consumer, topic: str, writer: ViewWriter, highest: dict[int, int]) -> None:
    """The group's offsets follow what the view applied (as the live projector's do), so Kafka's
    tools show a rebuild's true progress. Refused while a following projector has joined the group
    during a hand-over: it commits from then on."""
    positions = consumer.position([TopicPartition(topic, p) for p in highest])
    offsets = {
        tp.partition: offset
        for tp in positions
        if (
            offset := commit_offset(
                writer.known_checkpoints.get(tp.partition), (highest[tp.partition], tp.offset)
            )
        )
        is not None
    }
    try:
        consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False)
    except KafkaException as exc:
        log.debug("offsets not committed (%s); a projector has joined the group", exc)
        return
    try:
        await writer.record_commits(offsets)
    except REDIS_DOWN as exc:  # a hint only (see CheckpointOffsets.committed)
        log.info("group offsets committed but not recorded in Redis (%s)", exc)


async def _retrying(step: Callable[[], Awaitable[T]], what: str) -> T:
    delay = 0.1
    while True:
        try:
            return await step()
        except REDIS_DOWN as exc:
            log.warning("Redis unavailable (%s): %s; retrying in %.1fs", exc, what, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s")
    asyncio.run(run(CatchUpSettings()))  # type: ignore[call-arg]


if __name__ == "__main__":
    main()
