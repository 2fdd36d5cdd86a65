"""Creates the contract's topics; idempotent, and loud when an existing topic differs."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic  # type: ignore[attr-defined]

from infra.settings import TopicSettings
from producers.aggregates import aggregates
from schemas.kafka_security import kafka_config
from schemas.registry import SchemaRegistry
from schemas.schema_log import SchemaLog
from schemas.topics import TopicSpec, aggregate_topics, schemas_topic_spec


class TopicMismatch(RuntimeError):
    """An existing topic has another partition count or cleanup policy than the spec."""


@dataclass(frozen=True)
class TopicReport:
    name: str
    partitions: int
    cleanup_policy: str
    created: bool


def _wait_visible(admin: AdminClient, names: list[str], timeout_s: float = 30) -> dict[str, Any]:
    """Metadata of the topics once each is visible with a leader for every partition (a new
    topic takes a moment), so clients that start right after see a usable topic."""
    deadline = time.monotonic() + timeout_s
    while True:
        topics = admin.list_topics(timeout=15).topics
        missing = [
            n
            for n in names
            if n not in topics
            or topics[n].error is not None
            or any(p.leader < 0 for p in topics[n].partitions.values())
        ]
        if not missing:
            return topics
        if time.monotonic() > deadline:
            raise TopicMismatch(f"topics {missing} are still not visible after {timeout_s:.0f}s")
        time.sleep(0.1)


def _describe_configs(admin: AdminClient, names: list[str], timeout_s: float = 30) -> dict[str, Any]:
    """Each topic's configuration. On a cluster the request goes to any broker, and one that has
    not yet caught up with the metadata answers UNKNOWN_TOPIC_OR_PART for a new topic: ask again."""
    deadline = time.monotonic() + timeout_s
    resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in names]
    while True:
        try:
            return {r.name: f.result() for r, f in admin.describe_configs(resources).items()}
        except KafkaException as exc:
            if exc.args[0].name() != "UNKNOWN_TOPIC_OR_PART" or time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def specs(settings: TopicSettings) -> list[TopicSpec]:
    names = [name.strip() for name in settings.aggregates.split(",") if name.strip()] or list(aggregates())
    per_aggregate = [spec for name in names for spec in aggregate_topics(name, settings.topic_partitions)]
    return [*per_aggregate, schemas_topic_spec()]


def ensure_topics(settings: TopicSettings) -> list[TopicReport]:
    admin = AdminClient(kafka_config(settings.kafka_bootstrap_servers, log_level=4))
    wanted = specs(settings)
    existing = admin.list_topics(timeout=15).topics
    to_create = [
        NewTopic(
            s.name,
            s.partitions,
            settings.topic_replication_factor,
            config=s.all_config(settings.topic_min_insync_replicas),
        )
        for s in wanted
        if s.name not in existing
    ]
    created = set()
    for name, future in admin.create_topics(to_create, request_timeout=30).items() if to_create else []:
        try:
            future.result()
            created.add(name)
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":  # lost a race with another creator
                raise
    metadata = _wait_visible(admin, [s.name for s in wanted])
    configs = _describe_configs(admin, [s.name for s in wanted])
    reports, problems = [], []
    for spec in wanted:
        partitions = len(metadata[spec.name].partitions)
        policy = configs[spec.name]["cleanup.policy"].value
        if partitions != spec.partitions:
            problems.append(
                f"{spec.name} has {partitions} partitions, the settings say {spec.partitions}: "
                "changing a partition count moves aggregates to other partitions and breaks "
                "per-aggregate ordering; set TOPIC_PARTITIONS to match, or migrate to new topics"
            )
        if policy != spec.cleanup_policy:
            problems.append(
                f"{spec.name} has cleanup.policy={policy}, the contract says {spec.cleanup_policy}"
            )
        reports.append(TopicReport(spec.name, partitions, policy, spec.name in created))
    if problems:
        raise TopicMismatch("\n".join(problems))
    return reports


def publish_released_schemas(settings: TopicSettings) -> int:
    """Every released schema version on the schemas topic (only those missing); returns how many."""
    schema_log = SchemaLog(settings.kafka_bootstrap_servers, SchemaRegistry())
    try:
        return len(schema_log.publish_released())
    finally:
        schema_log.close()
