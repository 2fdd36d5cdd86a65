"""Kafka's authentication and ACLs on the real broker: each role may do what infra/kafka_acls.py
grants, and the broker refuses the rest (a foreign system cannot forge events)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from schemas.kafka_security import KafkaSecurity
from tests.conftest import Stack
from tests.support.kafka import Aggregate
from tests.support.principals import security_of

pytestmark = pytest.mark.integration
CLI = Path(sys.executable).with_name("cqrs")


def principal(name: str) -> KafkaSecurity:
    security = security_of(name)
    if security is None:
        pytest.skip("the stack has no credentials (not the local stack): nothing to check")
    return security


def produce(stack: Stack, security: KafkaSecurity, topic: str) -> KafkaError | None:
    """The delivery error of one record, None when the broker took it."""
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap_servers, **security.librdkafka()})
    outcome: list[KafkaError | None] = []
    producer.produce(
        topic, key=b"k", value=b"forged", partition=0, on_delivery=lambda e, _: outcome.append(e)
    )
    producer.flush(30)
    assert len(outcome) == 1, f"no delivery report for {topic}"
    return outcome[0]


def read_first(stack: Stack, security: KafkaSecurity, topic: str, group: str) -> bytes | None:
    consumer = Consumer(
        {
            "bootstrap.servers": stack.kafka_bootstrap_servers,
            **security.librdkafka(),
            "group.id": group,  # assign() only, but librdkafka still asks for its coordinator
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                raise KafkaException(message.error())
            return message.value()
        return None
    finally:
        consumer.close()


def refused(error: KafkaError | None) -> bool:
    return error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_another_system_sends_commands_and_reads_events_but_cannot_forge_them(
    stack: Stack, unique: str
) -> None:
    other = principal("other-system")
    aggregate = Aggregate.create(stack.kafka_bootstrap_servers, unique, partitions=1)
    name = aggregate.name
    # The operator (this test process) writes an event, as a command processor would.
    assert produce(stack, KafkaSecurity(), f"events.{name}") is None

    forged = produce(stack, other, f"events.{name}")
    assert refused(forged), forged
    for written_by_processors_only in ("snapshots", "results"):
        assert refused(produce(stack, other, f"{written_by_processors_only}.{name}"))

    assert produce(stack, other, f"commands.{name}") is None
    # the operator's record, read back
    assert read_first(stack, other, f"events.{name}", "other-system.acl-test") == b"forged"


def test_the_query_api_may_read_schemas_and_write_nothing(stack: Stack, unique: str) -> None:
    query_api = principal("query-api")
    aggregate = Aggregate.create(stack.kafka_bootstrap_servers, unique, partitions=1)
    assert refused(produce(stack, query_api, "schemas"))
    assert refused(produce(stack, query_api, f"commands.{aggregate.name}"))
    assert read_first(stack, query_api, "schemas", "schema-log-reader") is not None
    # events are not even described to it
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap_servers, **query_api.librdkafka()})
    events = admin.list_topics(f"events.{aggregate.name}", timeout=10).topics[f"events.{aggregate.name}"]
    assert events.error is not None and events.error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_a_wrong_password_is_refused(stack: Stack) -> None:
    good = principal("other-system")
    wrong = KafkaSecurity.for_user(good.sasl_username or "", str(uuid.uuid4()))
    errors: list[KafkaError] = []
    admin = AdminClient(
        {
            "bootstrap.servers": stack.kafka_bootstrap_servers,
            **wrong.librdkafka(),
            "error_cb": errors.append,
            "log_level": 0,
        }
    )
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=5)
    admin.poll(0.5)  # serves error_cb
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), errors
    # and a client without credentials gets no answer at all from the SASL listener
    plain = AdminClient({"bootstrap.servers": stack.kafka_bootstrap_servers, "log_level": 0})
    with pytest.raises(KafkaException):
        plain.list_topics(timeout=3)


def test_kafkas_own_acl_tool_lists_the_grants() -> None:
    principal("operator")
    run = subprocess.run(
        [str(CLI), "kafka", "acls", "--list", "--principal", "User:other-system"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    blocks = run.stdout.split("Current ACLs for resource ")
    events = next(b for b in blocks if "name=events., patternType=PREFIXED" in b)
    commands = next(b for b in blocks if "name=commands., patternType=PREFIXED" in b)
    assert "operation=READ" in events and "operation=WRITE" not in events
    assert "operation=WRITE" in commands


def test_the_operator_cli_names_missing_and_refused_credentials(stack: Stack) -> None:
    principal("operator")
    base = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_SASL_")}
    base["KAFKA_BOOTSTRAP_SERVERS"] = stack.kafka_bootstrap_servers

    def dlq_list(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(CLI), "dlq", "list"],
            env={**env, "COLUMNS": "300"},
            capture_output=True,
            text=True,
            timeout=60,
        )

    absent = dlq_list({**base, "KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"})
    assert absent.returncode == 1
    assert "no SASL credentials are set" in absent.stdout and "KAFKA_SASL_USERNAME" in absent.stdout

    wrong = dlq_list({**base, "KAFKA_SASL_USERNAME": "operator", "KAFKA_SASL_PASSWORD": "wrong"})
    assert wrong.returncode == 1
    assert "refused SASL authentication for user operator" in wrong.stdout, wrong.stdout
    assert "Traceback" not in wrong.stdout + wrong.stderr
