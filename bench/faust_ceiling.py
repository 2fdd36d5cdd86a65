"""faust's own ceiling, the second baseline of the live projection: a faust app configured as the
projector's (same transport, reading committed records, same batch size) whose one agent does
nothing but take the events and count them (one INCRBY per batch into BENCH_COUNTER).

Run by bench/projection.py as `python -m bench.faust_ceiling` with BENCH_TOPIC, BENCH_COUNTER,
BENCH_WEB_PORT, REDIS_URL and the Kafka settings in the environment."""

from __future__ import annotations

import os
import uuid
from typing import Any

import faust
import redis.asyncio as redis

from schemas.kafka_security import KafkaSecurity
from stream_processors.app import faust_datadir
from stream_processors.settings import ProjectorSettings


def main() -> None:
    settings = ProjectorSettings()
    counter = os.environ["BENCH_COUNTER"]
    app = faust.App(
        f"bench-ceiling-{uuid.uuid4().hex[:8]}",
        broker=[f"kafka-rc://{server}" for server in settings.kafka_bootstrap_servers.split(",")],
        broker_credentials=KafkaSecurity().faust_credentials(),
        topic_disable_leader=True,
        web_enabled=True,
        web_bind="127.0.0.1",
        web_host="127.0.0.1",
        web_port=int(os.environ["BENCH_WEB_PORT"]),
        store="memory://",
        datadir=faust_datadir() / "{conf.name}",
        consumer_auto_offset_reset="earliest",
    )
    topic = app.topic(os.environ["BENCH_TOPIC"], key_serializer="raw", value_serializer="raw", internal=False)
    client = redis.Redis.from_url(settings.redis_url)

    async def take(stream: Any) -> None:
        async for events in stream.take_events(settings.projector_batch_size, within=0.02):
            await client.incrby(counter, len(events))
            await app.consumer.commit()

    app.agent(topic, concurrency=1)(take)
    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
