"""Whether the command API can reach Kafka, known without asking on each request: librdkafka's
_ALL_BROKERS_DOWN (a killed broker) or a command left unacknowledged too long (a hung one) sets it
down after a failed metadata probe; a probe that gets metadata sets it up again. Requests read a flag."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from confluent_kafka import KafkaError

log = logging.getLogger(__name__)


class BrokerHealth:
    def __init__(
        self,
        probe: Callable[[], object],
        stall_s: float = 2.0,
        every_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`probe` asks Kafka for metadata and raises when it gets none (in time)."""
        self.probe, self.stall_s, self.every_s, self.clock = probe, stall_s, every_s, clock
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._detail = ""
        self._unacked: dict[str, float] = {}  # command id -> when it was handed to the producer

    # -- what requests read ---------------------------------------------------------------

    def unavailable(self) -> str | None:
        """Why Kafka is unreachable, or None while it is (believed) reachable."""
        return self._detail if self._down_since is not None else None

    # -- what the Kafka clients report -----------------------------------------------------

    def on_client_error(self, error: KafkaError) -> None:
        """librdkafka's error callback (producer and consumer)."""
        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            self.mark_down(f"Kafka is unreachable ({error.str()})")
        elif error.fatal():
            log.error("command API Kafka client fatal error: %s", error)

    def sent(self, command_id: str) -> None:
        with self._lock:
            self._unacked.setdefault(command_id, self.clock())

    def acked(self, command_id: str) -> None:
        with self._lock:
            self._unacked.pop(command_id, None)

    def mark_down(self, detail: str) -> None:
        with self._lock:
            was_up = self._down_since is None
            if was_up:
                self._down_since = self.clock()
            self._detail = detail
        if was_up:
            log.warning("%s: new commands get 503 broker_unavailable until a metadata probe succeeds", detail)

    def mark_up(self) -> None:
        with self._lock:
            since, self._down_since = self._down_since, None
        if since is not None:
            log.warning("Kafka answers again after %.1fs: taking commands again", self.clock() - since)

    # -- the watcher --------------------------------------------------------------------

    def check(self) -> None:
        """One round of the watcher: probe while down, or when a command waits too long for its ack."""
        with self._lock:
            oldest = min(self._unacked.values(), default=None)
        stalled = oldest is not None and self.clock() - oldest > self.stall_s
        if self._down_since is None and not stalled:
            return
        try:
            self.probe()
        except Exception as exc:
            self.mark_down(f"Kafka does not answer metadata ({exc})")
            return
        self.mark_up()

    def watch(self, stop: threading.Event) -> None:
        while not stop.wait(self.every_s):
            self.check()
