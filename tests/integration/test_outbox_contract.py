"""One contract for the single writer's outbox, run over the fake the unit tests use and over Kafka's
transactional producer: what the writer relies on must hold for both, or the fast tests prove
nothing about the real thing."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka import Producer

from infra.settings import TopicSettings
from infra.topics import ensure_topics
from schemas.kafka_security import kafka_config
from tests.conftest import Stack
from tests.support.kafka import read_topic
from tests.unit.test_single_writer import FakeOutbox

pytestmark = pytest.mark.integration


class KafkaOutbox:
    """A transactional producer, as the processor uses it: produce, flush (acks), commit."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self.producer = Producer(kafka_config(bootstrap, {"transactional.id": f"contract-{uuid.uuid4()}"}))
        self.producer.init_transactions()
        self.producer.begin_transaction()

    def produce(self, topic: str, **kwargs: Any) -> None:
        self.producer.produce(topic, **kwargs)

    def flush(self) -> None:
        self.producer.flush(10)
        self.producer.commit_transaction()

    def read_back(self) -> list[tuple[int, int, bytes | None, bytes | None, Any]]:
        return [
            (p, o, k, m.value(), m.headers())
            for p, o, k, m in read_topic(self.bootstrap, self.topic, decode=False)
        ]


class FakeOutboxReading(FakeOutbox):
    def __init__(self, topic: str) -> None:
        super().__init__()
        self.topic = topic

    def read_back(self) -> list[tuple[int, int, bytes | None, bytes | None, Any]]:
        offsets: dict[int, int] = {}
        rows = []
        for record in self.records:
            offset = offsets.get(record.partition, 0)
            offsets[record.partition] = offset + 1
            key = record.key.encode() if isinstance(record.key, str) else record.key
            rows.append((record.partition, offset, key, record.value, record.headers))
        return rows


@pytest.fixture(params=["fake", "kafka"])
def outbox(request: pytest.FixtureRequest, stack: Stack, unique: str) -> Iterator[Any]:
    topic = f"events.contract{unique}"
    if request.param == "fake":
        yield FakeOutboxReading(topic)
        return
    ensure_topics(TopicSettings(kafka_bootstrap_servers=stack.kafka_bootstrap_servers,
                                aggregates=f"contract{unique}", topic_partitions=2))  # fmt: skip
    yield KafkaOutbox(stack.kafka_bootstrap_servers, topic)


def acks() -> tuple[list[tuple[int, int, str]], Callable[[Any, Any], Callable[[Any, Any], None]]]:
    seen: list[tuple[int, int, str]] = []

    def for_record(label: str) -> Callable[[Any, Any], None]:
        def on_delivery(err: Any, msg: Any) -> None:
            assert err is None
            seen.append((msg.partition(), msg.offset(), label))

        return on_delivery

    return seen, for_record  # type: ignore[return-value]


def test_every_record_is_acknowledged_once_in_produce_order_per_partition(outbox: Any) -> None:
    """What positions rest on. (Across partitions, acknowledgements come in any order.)"""
    seen, for_record = acks()
    for n in range(6):
        callback = for_record(f"v{n}")
        outbox.produce(
            outbox.topic, key=f"k{n}", value=f"v{n}".encode(), partition=n % 2, on_delivery=callback
        )
    outbox.flush()
    assert sorted(label for *_, label in seen) == [f"v{n}" for n in range(6)]
    for partition in (0, 1):
        in_offset_order = [label for _, _, label in sorted(r for r in seen if r[0] == partition)]
        assert in_offset_order == [f"v{n}" for n in range(partition, 6, 2)]


def test_records_keep_key_value_partition_and_headers(outbox: Any) -> None:
    outbox.produce(outbox.topic, key="a:0000000001", value=b"\xc3\x01xyz", partition=1,
                   headers=[("command_id", b"c-1")])  # fmt: skip
    outbox.produce(outbox.topic, key=b"raw-key", value=b"second", partition=1)
    outbox.flush()
    rows = outbox.read_back()
    assert [(p, k, v) for p, _, k, v, _ in rows] == [
        (1, b"a:0000000001", b"\xc3\x01xyz"),
        (1, b"raw-key", b"second"),
    ]
    assert ("command_id", b"c-1") in list(rows[0][4])
