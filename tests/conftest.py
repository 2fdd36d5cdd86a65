"""Shared fixtures: the real Kafka and Redis (local stack, or testcontainers when asked for)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import settings

from tests.support.tokens import signing_key

# Property tests check what is computed, not how fast: on a shared 2-core box an example can take
# longer than Hypothesis's 200 ms deadline, which it then reports as a flaky failure.
settings.register_profile("shared-box", deadline=None)
settings.load_profile("shared-box")

signing_key()  # before any app is made: AUTH_PUBLIC_KEY_FILE names the key tests sign with


@dataclass(frozen=True)
class Stack:
    kafka_bootstrap_servers: str
    redis_url: str


def _docker_answers() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env().ping()
        return True
    except Exception:
        return False


def _containers() -> Iterator[Stack]:
    from testcontainers.kafka import KafkaContainer  # type: ignore[import-untyped]
    from testcontainers.redis import RedisContainer  # type: ignore[import-untyped]

    with KafkaContainer("apache/kafka:4.1.1").with_kraft() as kafka, RedisContainer("redis:7") as redis:
        host, port = redis.get_container_host_ip(), redis.get_exposed_port(6379)
        yield Stack(kafka.get_bootstrap_server(), f"redis://{host}:{port}/0")


def _reachable(stack: Stack) -> str | None:
    """None when both answer, else what is wrong."""
    import redis
    from confluent_kafka.admin import AdminClient

    from schemas.kafka_security import kafka_config

    try:
        redis.Redis.from_url(stack.redis_url, socket_timeout=2).ping()
    except Exception as exc:
        return f"Redis at {stack.redis_url} does not answer ({exc})"
    try:
        AdminClient(kafka_config(stack.kafka_bootstrap_servers, log_level=0)).list_topics(timeout=10)
    except Exception as exc:
        return f"Kafka at {stack.kafka_bootstrap_servers} does not answer ({exc})"
    return None


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """Real servers. CQRS_TESTCONTAINERS=1 with a Docker engine starts containers; otherwise the
    configured servers are used (`make test` starts the local stack for them)."""
    if os.environ.get("CQRS_TESTCONTAINERS") == "1" and _docker_answers():
        yield from _containers()
        return
    found = Stack(
        os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
    )
    problem = _reachable(found)
    if problem:
        pytest.fail(f"{problem}: run the suite with `make test`, which starts the local stack")
    yield found


@pytest.fixture
def unique() -> str:
    """A fresh id per test, so tests never see each other's data."""
    return uuid.uuid4().hex[:12]
