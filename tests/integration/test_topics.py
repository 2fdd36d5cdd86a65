"""Topic provisioning against the real broker: idempotent, and loud on a mismatch."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from infra.settings import TopicSettings
from infra.topics import TopicMismatch, ensure_topics
from schemas.kafka_security import kafka_config
from tests.conftest import Stack

pytestmark = pytest.mark.integration


def settings(stack: Stack, aggregate: str, partitions: int) -> TopicSettings:
    return TopicSettings(
        kafka_bootstrap_servers=stack.kafka_bootstrap_servers,
        aggregates=aggregate,
        topic_partitions=partitions,
    )


def test_creates_the_contract_topics_then_reports_them_as_existing(stack: Stack, unique: str) -> None:
    first = {r.name: r for r in ensure_topics(settings(stack, f"t{unique}", 3))}
    ours = {f"{kind}.t{unique}" for kind in ("events", "commands", "results", "snapshots", "deadletters")}
    assert set(first) == ours | {"schemas"}  # one schemas topic for the whole contract
    assert all(first[name].created and first[name].partitions == 3 for name in ours)
    assert (first["schemas"].partitions, first["schemas"].cleanup_policy) == (1, "compact")
    again = ensure_topics(settings(stack, f"t{unique}", 3))
    assert not any(r.created for r in again)

    admin = AdminClient(kafka_config(stack.kafka_bootstrap_servers))
    resource = ConfigResource(ConfigResource.Type.TOPIC, f"events.t{unique}")
    config = admin.describe_configs([resource])[resource].result()
    assert config["cleanup.policy"].value == "compact"
    assert config["retention.ms"].value == "-1"


def test_a_different_partition_count_fails_and_says_why(stack: Stack, unique: str) -> None:
    ensure_topics(settings(stack, f"t{unique}", 3))
    with pytest.raises(TopicMismatch, match="per-aggregate ordering"):
        ensure_topics(settings(stack, f"t{unique}", 4))
