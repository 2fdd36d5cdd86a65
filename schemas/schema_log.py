"""The log describes itself: every schema version, keyed by fingerprint, on a compacted topic.

`cqrs topics create` publishes the released versions; `cqrs schemas register` publishes a newer,
compatible version another team writes with. Processes that decode (command processors,
projectors, the query API's `GET /schemas/{fingerprint}`) read the topic when they meet a
fingerprint they do not know, so a registered version is read without a redeploy.

Record: key = the fingerprint as 16 hex digits (frame byte order), value = the schema's JSON,
headers `schema.name`, `schema.version`, `schema.origin` (`released` or `registered`).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from schemas.codec import SingleObjectCodec
from schemas.compatibility import can_read
from schemas.headers import header
from schemas.kafka_security import kafka_config
from schemas.registry import (
    InvalidSchema,
    Origin,
    SchemaRegistry,
    SchemaVersion,
    fingerprint_hex,
    parse_fingerprint_hex,
    schema_version,
)
from schemas.topics import SCHEMAS_TOPIC

log = logging.getLogger(__name__)


class SchemaRefused(ValueError):
    """A schema that may not be registered; the message names the field and the rule."""


def incompatibilities(registry: SchemaRegistry, candidate: SchemaVersion) -> list[str]:
    """Full transitive compatibility with every known version of the same record."""
    problems = []
    for known in registry.versions(candidate.name):
        for direction, reader, writer in (
            ("backward", candidate, known),
            ("forward", known, candidate),
        ):
            for problem in can_read(reader.raw, writer.raw):
                problems.append(
                    f"{candidate.name}: v{reader.version} cannot read v{writer.version} ({direction}): "
                    f"{problem}"
                )
    return problems


class SchemaLog:
    """Reads and writes the schemas topic for one registry; thread-safe."""

    def __init__(
        self,
        bootstrap: str,
        registry: SchemaRegistry,
        *,
        min_refresh_interval_s: float = 0.2,
        timeout_s: float = 10.0,
        client_config: dict[str, Any] | None = None,
    ) -> None:
        self.config = kafka_config(bootstrap, client_config)
        self.registry = registry
        self.min_refresh_interval_s = min_refresh_interval_s
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._consumer: Consumer | None = None
        self._next_offset = 0
        self._last_refresh = float("-inf")

    def close(self) -> None:
        with self._lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None

    # -- reading --------------------------------------------------------------------------

    def refresh(self) -> int:
        """Read the records published since the last refresh; returns how many versions were new."""
        with self._lock:
            self._last_refresh = time.monotonic()
            added = 0
            for msg in self._read_to_end():
                added += self._learn(msg)
            return added

    def refresh_if_due(self) -> bool:
        """Refresh unless one ran within `min_refresh_interval_s` (so unknown fingerprints in
        garbage frames cannot hammer the broker); raises KafkaException if the broker does not
        answer. Returns whether it refreshed."""
        if time.monotonic() - self._last_refresh < self.min_refresh_interval_s:
            return False
        self.refresh()
        return True

    def lookup(self, fingerprint: int) -> bool:
        """The codec's hook for an unknown fingerprint: is it known after a (due) refresh? A broker
        that does not answer means 'not known'."""
        try:
            self.refresh_if_due()
        except KafkaException as exc:
            log.warning(
                "could not read %s for fingerprint %s: %s", SCHEMAS_TOPIC, fingerprint_hex(fingerprint), exc
            )
        return self.registry.find(fingerprint) is not None

    def _read_to_end(self) -> Iterator[Message]:
        if self._consumer is None:
            self._consumer = Consumer(
                {
                    **self.config,
                    "group.id": "schema-log-reader",  # never joins: the partition is assigned by hand
                    "enable.auto.commit": False,
                    "log_level": 3,
                }
            )
        consumer = self._consumer
        low, high = self._watermarks(consumer)
        start = max(low, self._next_offset)
        if start >= high:
            return
        consumer.assign([TopicPartition(SCHEMAS_TOPIC, 0, start)])
        deadline = time.monotonic() + self.timeout_s
        try:
            while self._next_offset < high:
                if time.monotonic() > deadline:
                    raise KafkaException(KafkaError(KafkaError._TIMED_OUT, f"{SCHEMAS_TOPIC} read timed out"))
                for msg in consumer.consume(num_messages=500, timeout=0.2):
                    error = msg.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            continue
                        raise KafkaException(error)
                    self._next_offset = (msg.offset() or 0) + 1
                    yield msg
        finally:
            consumer.unassign()

    def _watermarks(self, consumer: Consumer) -> tuple[int, int]:
        """Retried while the partition has no leader yet (just created, a broker restarting)."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(SCHEMAS_TOPIC, 0), timeout=self.timeout_s
                )
                return low, high
            except KafkaException as exc:
                error = exc.args[0]
                settling = error.retriable() or error.code() in (
                    KafkaError.NOT_LEADER_FOR_PARTITION,
                    KafkaError.LEADER_NOT_AVAILABLE,
                    KafkaError.UNKNOWN_TOPIC_OR_PART,
                )
                if not settling or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def _learn(self, msg: Message) -> int:
        value = msg.value()
        if value is None:  # a tombstone: nothing to learn
            return 0
        try:
            raw = json.loads(value)
            version = int(header(msg, "schema.version") or "0")
            origin: Origin = "released" if header(msg, "schema.origin") == "released" else "registered"
            schema = schema_version(raw, version, origin)
            key = (msg.key() or b"").decode()
            if parse_fingerprint_hex(key) != schema.fingerprint:
                raise InvalidSchema(f"key {key} is not the schema's fingerprint {schema.fingerprint_hex}")
            return int(self.registry.add(schema))
        except (ValueError, InvalidSchema) as exc:
            log.warning("ignoring %s record at offset %s: %s", SCHEMAS_TOPIC, msg.offset(), exc)
            return 0

    # -- writing --------------------------------------------------------------------------

    def publish(self, schemas: list[SchemaVersion]) -> None:
        producer = Producer({**self.config, "enable.idempotence": True, "linger.ms": 5, "log_level": 3})
        errors: list[str] = []

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                errors.append(err.str())

        for schema in schemas:
            producer.produce(
                SCHEMAS_TOPIC,
                key=schema.fingerprint_hex,
                value=schema.text,
                headers=[
                    ("schema.name", schema.name.encode()),
                    ("schema.version", str(schema.version).encode()),
                    ("schema.origin", schema.origin.encode()),
                ],
                on_delivery=on_delivery,
            )
        remaining = producer.flush(self.timeout_s)
        if errors or remaining:
            raise KafkaException(
                KafkaError(KafkaError._MSG_TIMED_OUT, f"schemas not published: {errors or remaining}")
            )

    def publish_released(self) -> list[SchemaVersion]:
        """Publish every released version the topic does not have yet; returns those published."""
        on_topic = SchemaRegistry(root=None)
        reader = SchemaLog(self.config["bootstrap.servers"], on_topic, client_config=self._extra())
        try:
            reader.refresh()
        finally:
            reader.close()
        missing = [
            s for s in self.registry.all() if s.origin == "released" and on_topic.find(s.fingerprint) is None
        ]
        if missing:
            self.publish(missing)
        return missing

    def register(self, raw: Any) -> tuple[SchemaVersion, bool]:
        """Check a newer version against every known one and publish it. Returns the version and
        whether it was new (False: this exact schema is known already)."""
        self.refresh()
        try:
            probe = schema_version(raw, 0, "registered")
        except InvalidSchema as exc:
            raise SchemaRefused(str(exc)) from None
        known = self.registry.find(probe.fingerprint)
        if known is not None:
            return known, False
        same_name = self.registry.versions(probe.name)
        if same_name and same_name[0].full_name != probe.full_name:
            raise SchemaRefused(
                f"{probe.full_name}: a record named {probe.name} exists as {same_name[0].full_name}"
            )
        candidate = schema_version(raw, max((v.version for v in same_name), default=0) + 1, "registered")
        problems = incompatibilities(self.registry, candidate)
        if problems:
            raise SchemaRefused("incompatible with the known versions:\n" + "\n".join(problems))
        self.publish([candidate])
        self.registry.add(candidate)
        return candidate, True

    def _extra(self) -> dict[str, Any]:
        return {k: v for k, v in self.config.items() if k != "bootstrap.servers"}


def codec_reading_the_log(bootstrap: str, client_config: dict[str, Any] | None = None) -> SingleObjectCodec:
    """A codec of its own registry that looks up unknown fingerprints on the schemas topic."""
    registry = SchemaRegistry()
    schema_log = SchemaLog(bootstrap, registry, client_config=client_config)
    try:  # registered versions of records this code does not know are written with them too
        schema_log.refresh()
    except KafkaException as exc:
        log.warning(
            "the schemas topic could not be read yet (%s); it is read on the first unknown frame", exc
        )
    return SingleObjectCodec(registry, lookup=schema_log.lookup)
