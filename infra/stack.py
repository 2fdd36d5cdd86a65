"""The local stack as a whole: Kafka (one broker or a cluster of three) and Redis up, down and status."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import redis as redis_client

from infra import credentials, processes
from infra.kafka_broker import KafkaBroker, KafkaCluster
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
    kafka_started = KafkaCluster(settings).start()
    return Started(kafka_started, redis_started, time.monotonic() - began)


def down(settings: StackSettings, *, kafka: bool = True, redis: bool = True) -> list[str]:
    stopped = KafkaCluster(settings).stop() if kafka else []
    if redis and RedisServer(settings).stop():
        stopped.append("redis")
    return stopped


def status(settings: StackSettings) -> list[tuple[str, str, int | None, str]]:
    """(name, address, pid or None, data folder) per server: `kafka`, or `kafka-1` … `kafka-3`."""
    redis = RedisServer(settings)
    rhost, rport = settings.redis_host_port
    return [
        *((b.name, b.node.address, b.pid(), str(b.home)) for b in KafkaCluster(settings).brokers),
        *_other_brokers(settings),
        ("redis", f"{rhost}:{rport}", redis.pid(), str(redis.home)),
    ]


def _other_brokers(settings: StackSettings) -> list[tuple[str, str, int | None, str]]:
    """Brokers of this stack folder that run in another layout than KAFKA_BROKERS says."""
    mine = {b.pid_file for b in KafkaCluster(settings).brokers}
    rows: list[tuple[str, str, int | None, str]] = []
    for pid_file in sorted(settings.stack_dir.resolve().glob("kafka*/kafka.pid")):
        if pid_file not in mine and (pid := processes.running_pid(pid_file)) is not None:
            config = (pid_file.parent / "server.properties").read_text(errors="replace")
            found = re.search(r"^advertised\.listeners=\w+://(\S+)", config, re.MULTILINE)
            rows.append((pid_file.parent.name, found[1] if found else "?", pid, str(pid_file.parent)))
    return rows


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
