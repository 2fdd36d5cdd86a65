"""How the command side sorts librdkafka errors: weather to wait out, a transaction to abort, a
producer to replace, or something no waiting fixes (exit, and say why)."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from confluent_kafka import KafkaError, KafkaException

T = TypeVar("T")

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
        # A client that has just (re)connected to a broker waking from a pause does not know a
        # partition's leader yet (seen from the state loader's watermark query right after SIGCONT).
        KafkaError._UNKNOWN_PARTITION,
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
    so an outage of minutes gives a handful of lines rather than thousands. Our own calls say
    `warning(key, ...)`; on another library's loggers it is a filter (logging calls `filter`),
    keyed by logger and message template (aiokafka logs each reconnection attempt, ~100 ERROR
    lines a second)."""

    logger: logging.Logger
    every_s: float = 10.0
    _last: dict[object, float] = field(default_factory=dict)
    _suppressed: dict[object, int] = field(default_factory=dict)

    def warning(self, key: str, message: str, *args: object) -> None:
        extra = self._admit(key)
        if extra is not None:
            self.logger.warning(message + extra, *args)

    def filter(self, record: logging.LogRecord) -> bool:
        extra = self._admit((record.name, str(record.msg)))
        if extra:
            record.msg = f"{record.msg}{extra}"
        return extra is not None

    def _admit(self, key: object) -> str | None:
        """None: held back; else what to add to the message (how many were held back since)."""
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.every_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return None
        suppressed = self._suppressed.pop(key, 0)
        self._last[key] = now
        return f" ({suppressed} more like it since)" if suppressed else ""


# -- waiting Kafka out, shared by the command processors and the transfer process -----------------


class BrokerUnreachable(RuntimeError):
    """Kafka did not answer for the whole wait allowed."""


class Stopping(Exception):
    """A stop was requested while Kafka was being waited for."""


class Stuck(Exception):
    """A transactional call outlived its own timeout by far: librdkafka can block in
    send_offsets_to_transaction past its timeout after a broker restart (confluentinc/librdkafka
    #5456, #5511: the group coordinator request is never retried). The producer is abandoned."""


class CallThread:
    """One daemon thread that makes blocking calls for the main thread, which waits a bounded time:
    a call blocked for good then holds this thread only (and, being a daemon, not the exit)."""

    def __init__(self) -> None:
        self.calls: queue.SimpleQueue[tuple[Callable[[], Any], list[tuple[bool, Any]], threading.Event]] = (
            queue.SimpleQueue()
        )
        threading.Thread(target=self._serve, name="txn-call", daemon=True).start()

    def _serve(self) -> None:
        while True:
            call, box, done = self.calls.get()
            try:
                box.append((True, call()))
            except BaseException as exc:
                box.append((False, exc))
            done.set()

    def run(self, call: Callable[[], T], timeout_s: float) -> T:
        """The call's result or exception; TimeoutError if it has not returned in `timeout_s`."""
        return self.submit(call)(timeout_s)

    def submit(self, call: Callable[[], T]) -> Callable[[float], T]:
        """Start the call (after those before it); the function returned waits for it as `run`."""
        box: list[tuple[bool, Any]] = []
        done = threading.Event()
        self.calls.put((call, box, done))

        def wait(timeout_s: float) -> T:
            if not done.wait(timeout_s):
                raise TimeoutError
            ok, value = box[0]
            if not ok:
                raise value
            result: T = value
            return result

        return wait


class BoundedCalls:
    """Transactional calls (each given its own timeout) made on a CallThread and waited for
    `limit_s`; a call still blocked then raises Stuck, and keeps its thread (a new one serves the
    next calls)."""

    def __init__(self, limit_s: float) -> None:
        self.limit_s = limit_s
        self.thread = CallThread()

    def __call__(self, what: str, call: Callable[[], T]) -> T:
        return self.start(what, call)()

    def start(self, what: str, call: Callable[[], T]) -> Callable[[], T]:
        """Start the call now, so the caller can do other work meanwhile; the function returned
        waits for it as a call of this object does (Stuck after `limit_s`)."""
        thread = self.thread
        waiting = thread.submit(call)

        def wait() -> T:
            try:
                return waiting(self.limit_s)
            except TimeoutError:
                if self.thread is thread:
                    self.thread = CallThread()
                raise Stuck(f"{what} did not return in {self.limit_s:.0f}s") from None

        return wait


@dataclass
class Patience:
    """How long to wait Kafka out: `retry` repeats a call while its errors say Kafka is away."""

    quiet: QuietLog
    stop: threading.Event
    wait_s: float

    def retry(self, what: str, call: Callable[[], T], attempts: int | None = None) -> T:
        """`call` until it succeeds, while its errors are transient, for `wait_s` (or `attempts`
        calls) at most, then BrokerUnreachable (or the last error); any other error is raised for
        the caller to sort; Stopping when a stop is requested meanwhile."""
        deadline = time.monotonic() + self.wait_s
        delay = 0.2
        while True:
            try:
                return call()
            except KafkaException as exc:
                error = error_of(exc)
                if not transient(error):
                    raise
                if attempts is not None:
                    attempts -= 1
                    if attempts <= 0:
                        raise
                if time.monotonic() + delay > deadline:
                    raise BrokerUnreachable(
                        f"{what}: Kafka did not answer for {self.wait_s:.0f}s (last error: {error})"
                    ) from exc
                self.quiet.warning(what, "%s failed: %s; Kafka is unreachable, trying again", what, error)
                if self.stop.wait(delay):
                    raise Stopping(what) from exc
                delay = min(delay * 2, 5.0)
