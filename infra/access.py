"""Before the operator CLI acts: can it reach Kafka and Redis with the credentials it was given? A
missing or refused credential is named, with what to set, instead of a hang or a stack trace."""

from __future__ import annotations

from urllib.parse import urlsplit

import redis
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from schemas.kafka_security import KafkaSecurity, kafka_config

HOW = (
    "set KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD (and KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT) to the "
    "operator's credentials (`cqrs stack credentials` prints them; `eval \"$(cqrs stack credentials "
    '--env)"` sets them)'
)


def kafka_problem(bootstrap: str, timeout_s: float = 8.0) -> str | None:
    """None when Kafka answers metadata to these credentials, else what is wrong and what to do."""
    security = KafkaSecurity()
    errors: list[KafkaError] = []
    admin = AdminClient(kafka_config(bootstrap, log_level=0, error_cb=errors.append))
    try:
        admin.list_topics(timeout=timeout_s)
        return None
    except KafkaException as exc:
        admin.poll(0.5)  # serves error_cb: a refused login is reported there, not in the exception
        errors.append(exc.args[0])
    if any(e.code() == KafkaError._AUTHENTICATION for e in errors):
        who = security.username or "(none)"
        return f"Kafka at {bootstrap} refused SASL authentication for user {who}: {HOW}"
    last = errors[-1].str() if errors else "no answer"
    if not security.sasl:
        return (
            f"Kafka at {bootstrap} did not answer within {timeout_s:.0f}s ({last}), and no SASL "
            f"credentials are set (KAFKA_SECURITY_PROTOCOL={security.security_protocol}); if it requires "
            f"them, as the local stack does: {HOW}"
        )
    return f"Kafka at {bootstrap} did not answer within {timeout_s:.0f}s ({last})"


def redis_problem(url: str) -> str | None:
    """None when Redis answers PING to the user of REDIS_URL, else what is wrong and what to do."""
    parts = urlsplit(url)
    where = f"{parts.hostname}:{parts.port or 6379}"
    how = (
        "set REDIS_URL=redis://operator:<password>@host:port/db "
        '(`eval "$(cqrs stack credentials --env)"` sets it for the local stack)'
    )
    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    try:
        client.ping()
        return None
    except redis.AuthenticationError as exc:
        who = parts.username or "default"
        return f"Redis at {where} refused user {who} ({exc}): {how}"
    except redis.ResponseError as exc:
        if "NOAUTH" in str(exc) or "NOPERM" in str(exc):
            return f"Redis at {where} requires a user and password ({exc}): {how}"
        return f"Redis at {where}: {exc}"
    except redis.ConnectionError as exc:
        return f"Redis at {where} does not answer ({exc})"
    finally:
        client.close()
