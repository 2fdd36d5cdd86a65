"""The local stack as a whole: Kafka and Redis up, down and status."""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis as redis_client

from infra import credentials
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


@dataclass(frozen=True)
class Secured:
    """Which running servers of the stack want credentials: a server started before security
    was turned on keeps running without it until `stack down` and `stack up`."""

    kafka: bool
    redis: bool


def secured(settings: StackSettings) -> Secured:
    passwords = credentials.load(settings.stack_dir)
    if passwords is None:
        return Secured(False, False)
    broker = KafkaBroker(settings)
    kafka = broker.properties.exists() and "SASL_PLAINTEXT://" in broker.properties.read_text()
    client = RedisServer(settings).operator_client(passwords, socket_timeout=2)
    try:
        client.ping()
        redis = True
    except redis_client.AuthenticationError:  # no such user: started without the ACL file
        redis = False
    except redis_client.RedisError:
        redis = True  # not running (or not answering): the next start has users
    finally:
        client.close()
    return Secured(kafka, redis)
