"""How the command side sorts librdkafka errors: weather to wait out, a transaction to abort, a
producer to replace, or something no waiting fixes (exit, and say why)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from confluent_kafka import KafkaError

# Errors a running broker answers only when it is misconfigured or we are not allowed: waiting
# does not help, so the process says so and exits (its supervisor restarts it).
UNRECOVERABLE = frozenset(
    {
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    }
)

# The broker is away (killed, paused, restarting, still loading its logs): wait and try again.
# _AUTHENTICATION is here too: a restarted broker refuses SCRAM logins until its user cache is
# loaded (infra/kafka_broker.py waits for the same thing).
TRANSIENT = frozenset(
    {
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._TIMED_OUT,
        KafkaError._MSG_TIMED_OUT,
        KafkaError._RESOLVE,
        KafkaError._AUTHENTICATION,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.CONCURRENT_TRANSACTIONS,
    }
)


def error_of(exc: BaseException) -> KafkaError | None:
    arg = exc.args[0] if exc.args else None
    return arg if isinstance(arg, KafkaError) else None


def unrecoverable(error: KafkaError | None) -> bool:
    return error is not None and error.code() in UNRECOVERABLE


def transient(error: KafkaError | None) -> bool:
    """Worth the same call again after a pause (librdkafka says retriable, or the broker is away)."""
    if error is None or error.fatal() or error.txn_requires_abort():
        return False
    return error.retriable() or error.code() in TRANSIENT


@dataclass
class QuietLog:
    """Logs the first of a run of identical errors at once, then one summary line per `every_s`,
    so an outage of minutes gives a handful of lines rather than thousands."""

    logger: logging.Logger
    every_s: float = 10.0
    _last: dict[str, float] = field(default_factory=dict)
    _suppressed: dict[str, int] = field(default_factory=dict)

    def warning(self, key: str, message: str, *args: object) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.every_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        suppressed = self._suppressed.pop(key, 0)
        self._last[key] = now
        extra = f" ({suppressed} more like it since)" if suppressed else ""
        self.logger.warning(message + extra, *args)

    def forget(self) -> None:
        self._last.clear()
        self._suppressed.clear()
