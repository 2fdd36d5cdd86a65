"""Submits commands to commands.<aggregate> and waits for their outcome on results.<aggregate>, for
every aggregate the command API serves."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from producers.api.broker_health import BrokerHealth
from producers.api.inflight import InFlight
from producers.engine.batches import next_batch
from producers.engine.handler import CommandEnvelope, Outcome
from producers.engine.kafka_errors import QuietLog
from producers.engine.wire import command_headers, command_to_record, outcome_from_result
from producers.settings import CommandApiSettings
from schemas.codec import Codec, CodecError, SingleObjectCodec
from schemas.kafka_security import kafka_config
from schemas.keys import partition_for
from schemas.topics import commands_topic, results_topic

log = logging.getLogger(__name__)


class OutcomeTimeout(Exception):
    def __init__(self, command_id: str) -> None:
        super().__init__(f"no outcome for command {command_id} in time")
        self.command_id = command_id


class GatewayUnavailable(Exception):
    """Kafka is unreachable, or refused or lost the command; nothing was appended."""


class CommandBus(Protocol):
    """What the routes need: submit a command and get its outcome. Faked in unit tests."""

    def start(self) -> None: ...

    def close(self) -> None: ...

    async def submit(self, aggregate: str, envelope: CommandEnvelope, command: Any) -> Outcome: ...


class CommandGateway:
    """One producer for commands, one thread reading every results partition from its end."""

    def __init__(
        self,
        settings: CommandApiSettings,
        aggregates: list[str],
        codec: Codec | None = None,
        producer: Producer | None = None,
        consumer: Consumer | None = None,
    ) -> None:
        """`producer` and `consumer` are for tests (fakes); by default they are made here."""
        self.settings = settings
        self.codec = codec or SingleObjectCodec()
        self.aggregates = aggregates
        self.health = BrokerHealth(self._probe)
        base = kafka_config(
            settings.kafka_bootstrap_servers,
            {"socket.nagle.disable": True, "error_cb": self.health.on_client_error},
        )
        self.producer = producer or Producer(
            {**base, "linger.ms": settings.command_api_linger_ms, "enable.idempotence": True}
        )
        self.consumer = consumer or Consumer(
            {
                **base,
                "group.id": "command-api",  # never joins: partitions are assigned by hand
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "fetch.min.bytes": settings.command_api_results_fetch_min_bytes,
                "fetch.wait.max.ms": settings.command_api_results_fetch_wait_max_ms,
            }
        )
        self.quiet = QuietLog(log)
        self.partitions: dict[str, int] = {}  # commands topic -> partition count
        self._waiters = InFlight()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Read results from their current end, so no outcome of ours can be missed."""
        self._loop = asyncio.get_running_loop()
        metadata = self.consumer.list_topics(timeout=10)
        self.topics = {a: self.settings.topics(a) for a in self.aggregates}
        names = [t(self.topics[a]) for a in self.aggregates for t in (commands_topic, results_topic)]
        topics = {name: metadata.topics.get(name) for name in names}
        missing = [name for name, t in topics.items() if t is None or t.error is not None]
        if missing:
            raise RuntimeError(f"topics {missing} do not exist: run `cqrs topics create`")
        starts = []
        for aggregate in self.aggregates:
            suffix = self.topics[aggregate]
            self.partitions[commands_topic(suffix)] = len(topics[commands_topic(suffix)].partitions)
            results = results_topic(suffix)
            for p in topics[results].partitions:
                _, high = self.consumer.get_watermark_offsets(TopicPartition(results, p), timeout=10)
                starts.append(TopicPartition(results, p, high))
        self.consumer.assign(starts)
        for target in (self._read_results, self._serve_deliveries, self._watch_broker):
            thread = threading.Thread(target=target, name=target.__name__, daemon=True)
            thread.start()
            self._threads.append(thread)

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self.producer.flush(5)
        self.consumer.close()

    async def submit(self, aggregate: str, envelope: CommandEnvelope, command: Any) -> Outcome:
        assert self._loop is not None, "start() first"
        if (why := self.health.unavailable()) is not None:
            raise GatewayUnavailable(why)  # at once: nothing is sent, so nothing can be applied later
        topic = commands_topic(self.topics[aggregate])
        name, record = command_to_record(envelope, command)

        def send() -> None:
            self.producer.produce(
                topic,
                key=envelope.aggregate_id,
                value=self.codec.encode(name, record),
                partition=partition_for(envelope.aggregate_id, self.partitions[topic]),
                headers=command_headers(envelope),
                on_delivery=self._on_delivery(envelope.command_id),
            )
            self.health.sent(envelope.command_id)

        # What makes two requests with one command id the same command (not when they were made).
        payload = (topic, envelope.aggregate_id, envelope.expected_version, envelope.actor, repr(command))
        try:
            return await self._waiters.outcome(
                envelope.command_id, payload, send, self.settings.command_timeout_s
            )
        except BufferError as exc:
            raise GatewayUnavailable(f"producer queue is full: {exc}") from exc
        except TimeoutError:
            raise OutcomeTimeout(envelope.command_id) from None

    def _on_delivery(self, command_id: str) -> Any:
        def callback(err: KafkaError | None, _msg: Message) -> None:
            self.health.acked(command_id)
            if err is not None:
                log.warning("command %s not delivered: %s; its request gets 503", command_id, err)
                self._resolve(command_id, GatewayUnavailable(f"command not delivered: {err.str()}"))

        return callback

    def _resolve(self, command_id: str, result: Outcome | Exception) -> None:
        """From any thread: every request waiting for `command_id` gets `result`."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._waiters.settle, command_id, result)

    def _serve_deliveries(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(0.1)

    def _probe(self) -> None:
        """Metadata from a broker within a second, or an exception."""
        self.producer.list_topics(next(iter(self.partitions)), timeout=1.0)

    def _watch_broker(self) -> None:
        self.health.watch(self._stop)

    def _read_results(self) -> None:
        while not self._stop.is_set():
            for msg in next_batch(self.consumer, 500, 0.1):
                if (error := msg.error()) is not None:
                    self.quiet.warning(f"results:{error.code()}", "results consumer: %s; it goes on", error)
                    continue
                key = msg.key()
                if key is None or key.decode(errors="replace") not in self._waiters:
                    continue  # another instance's command, or one that gave up: skip decoding
                try:
                    record = self.codec.decode(msg.value() or b"").record
                except CodecError as exc:
                    log.error("undecodable result at offset %s: %s", msg.offset(), exc)
                    continue
                if record["command_id"] in self._waiters:
                    self._resolve(record["command_id"], outcome_from_result(record))
