"""The local stack as a whole: Kafka and Redis up, down and status."""

from __future__ import annotations

import time
from dataclasses import dataclass

from infra.kafka_broker import KafkaBroker
from infra.redis_server import RedisServer
from infra.settings import StackSettings


@dataclass(frozen=True)
class Started:
    kafka: bool
    redis: bool
    kafka_seconds: float


def up(settings: StackSettings) -> Started:
    settings.check_loopback()
    redis_started = RedisServer(settings).start()
    began = time.monotonic()
    kafka_started = KafkaBroker(settings).start()
    return Started(kafka_started, redis_started, time.monotonic() - began)


def down(settings: StackSettings, *, kafka: bool = True, redis: bool = True) -> list[str]:
    stopped = []
    if kafka and KafkaBroker(settings).stop():
        stopped.append("kafka")
    if redis and RedisServer(settings).stop():
        stopped.append("redis")
    return stopped


def status(settings: StackSettings) -> list[tuple[str, str, int | None, str]]:
    """(name, address, pid or None, data folder) per server."""
    kafka, redis = KafkaBroker(settings), RedisServer(settings)
    khost, kport = settings.kafka_host_port
    rhost, rport = settings.redis_host_port
    return [
        ("kafka", f"{khost}:{kport}", kafka.pid(), str(kafka.home)),
        ("redis", f"{rhost}:{rport}", redis.pid(), str(redis.home)),
    ]
