"""The recipe "add an aggregate" stays true: a toy aggregate declared in tests/ alone (a module, its
schemas registered on the schemas topic, CQRS_EXTRA_MODULES) runs through the unchanged engine:
its own command processor, results, events, snapshots, and HTTP routes in the command API."""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka import Producer
from fastapi.testclient import TestClient

from infra.settings import TopicSettings
from infra.topics import ensure_topics
from producers import aggregates
from producers.api.app import create_app
from producers.settings import CommandApiSettings
from schemas.codec import SingleObjectCodec
from schemas.kafka_security import kafka_config
from schemas.keys import partition_for
from schemas.registry import SchemaRegistry
from schemas.schema_log import SchemaLog
from tests.conftest import Stack
from tests.support.kafka import ChildProcess, read_topic
from tests.support.tokens import bearer
from tests.unit.test_command_api import FakeBus

pytestmark = pytest.mark.integration
TOY = Path(__file__).resolve().parents[1] / "support" / "toy_avro"
ENGINE = Path(__file__).resolve().parents[2] / "producers" / "engine"


def register_toy_schemas(bootstrap: str) -> SchemaRegistry:
    registry = SchemaRegistry()
    schema_log = SchemaLog(bootstrap, registry)
    try:
        for path in sorted(TOY.glob("*.avsc")):
            schema_log.register(json.loads(path.read_text()))
    finally:
        schema_log.close()
    return registry


def test_a_toy_aggregate_from_tests_runs_through_the_engine(
    stack: Stack, unique: str, tmp_path: Path
) -> None:
    assert "counter" not in ENGINE.joinpath("aggregate.py").read_text()  # nothing of it in the engine
    registry = register_toy_schemas(stack.kafka_bootstrap_servers)
    topics = f"counter{unique}"
    ensure_topics(TopicSettings(kafka_bootstrap_servers=stack.kafka_bootstrap_servers, aggregates=topics,
                                topic_partitions=2))  # fmt: skip
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap_servers,
        "CQRS_EXTRA_MODULES": "tests.support.toy_counter",
        "AGGREGATE": "counter",
        "TOPIC_SUFFIX": topics,
        "PROCESSOR_SNAPSHOT_EVERY": "3",
    }
    processor = ChildProcess()
    processor.log = tmp_path / "counter-processor.log"
    processor.spawn("producers.processor", env)
    try:
        codec = SingleObjectCodec(registry)
        producer = Producer(kafka_config(stack.kafka_bootstrap_servers))
        ids = []
        for by in (2, 3, -1, 5):
            command_id = str(uuid.uuid4())
            record = {"command_id": command_id, "aggregate_id": "c1", "expected_version": None,
                      "correlation_id": command_id, "issued_at": datetime.now(UTC), "by": by}  # fmt: skip
            headers = [("command_id", command_id.encode())]
            value = codec.encode("Increment", record)
            producer.produce(
                f"commands.{topics}", key="c1", value=value, partition=partition_for("c1", 2), headers=headers
            )
            ids.append(command_id)
        assert producer.flush(10) == 0
        deadline = time.monotonic() + 90
        while True:
            results = {
                r["command_id"]: r
                for *_, r in read_topic(stack.kafka_bootstrap_servers, f"results.{topics}", with_codec=codec)
            }
            if set(ids) <= set(results):
                break
            assert time.monotonic() < deadline, processor.log.read_text()
            time.sleep(0.5)
    finally:
        processor.stop()
    assert [(results[i]["status"], results[i]["version"]) for i in ids] == [
        ("ACCEPTED", 1), ("ACCEPTED", 2), ("REJECTED", 2), ("ACCEPTED", 3)
    ]  # fmt: skip
    assert results[ids[2]]["reason"] == "invalid_amount"
    codec = SingleObjectCodec(registry)
    events = [e for *_, e in read_topic(stack.kafka_bootstrap_servers, f"events.{topics}", with_codec=codec)]
    assert [(e["aggregate_type"], e["event_type"], e["version"], e["by"]) for e in events] == [
        ("counter", "Incremented", 1, 2), ("counter", "Incremented", 2, 3), ("counter", "Incremented", 3, 5)
    ]  # fmt: skip
    snapshots = [
        s
        for _, _, key, s in read_topic(stack.kafka_bootstrap_servers, f"snapshots.{topics}", with_codec=codec)
        if key == b"c1"
    ]
    assert snapshots and snapshots[-1]["total"] == 10  # the state, snapshotted by the generic codec


def test_its_routes_join_the_command_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CQRS_EXTRA_MODULES", "tests.support.toy_counter")
    aggregates.aggregates.cache_clear()
    try:
        bus = FakeBus()
        staff = bearer(scopes=("counters:write",))
        with TestClient(create_app(CommandApiSettings(), gateway=bus), headers=staff) as client:
            assert client.post("/counters/c9/increments", json={"by": 4}).json() == {"version": 1}
            assert "/counters/{counter_id}/increments" in client.get("/openapi.json").json()["paths"]
        ((aggregate, envelope, command),) = bus.calls
        assert (aggregate, envelope.aggregate_id, command.by) == ("counter", "c9", 4)
    finally:
        monkeypatch.delenv("CQRS_EXTRA_MODULES")
        aggregates.aggregates.cache_clear()
