"""Topic names and specs of the contract; `infra.topics` applies them to a cluster."""

from __future__ import annotations

from dataclasses import dataclass, field

DAY_MS = 24 * 60 * 60 * 1000
SCHEMAS_TOPIC = "schemas"  # every schema version, keyed by fingerprint (schemas/schema_log.py)


def events_topic(aggregate: str) -> str:
    return f"events.{aggregate}"


def commands_topic(aggregate: str) -> str:
    return f"commands.{aggregate}"


def results_topic(aggregate: str) -> str:
    return f"results.{aggregate}"


def snapshots_topic(aggregate: str) -> str:
    return f"snapshots.{aggregate}"


def dead_letters_topic(aggregate: str) -> str:
    """Events of this aggregate that a projector could not apply, with the error in headers."""
    return f"deadletters.{aggregate}"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    cleanup_policy: str  # "compact" or "delete"
    config: dict[str, str] = field(default_factory=dict)

    def all_config(self, min_insync_replicas: int) -> dict[str, str]:
        return {
            "cleanup.policy": self.cleanup_policy,
            "min.insync.replicas": str(min_insync_replicas),
            **self.config,
        }


def aggregate_topics(aggregate: str, partitions: int) -> list[TopicSpec]:
    """Events (the store: compacted, kept forever), commands, results (the idempotency window) and
    the command side's snapshots, all co-partitioned."""
    return [
        TopicSpec(events_topic(aggregate), partitions, "compact", {"retention.ms": "-1"}),
        TopicSpec(commands_topic(aggregate), partitions, "delete", {"retention.ms": str(7 * DAY_MS)}),
        TopicSpec(results_topic(aggregate), partitions, "delete", {"retention.ms": str(DAY_MS)}),
        TopicSpec(snapshots_topic(aggregate), partitions, "compact", {"retention.ms": "-1"}),
        TopicSpec(dead_letters_topic(aggregate), partitions, "delete", {"retention.ms": str(30 * DAY_MS)}),
    ]


def schemas_topic_spec() -> TopicSpec:
    """One partition (it is small and read whole), compacted: a fingerprint's schema never changes."""
    return TopicSpec(SCHEMAS_TOPIC, 1, "compact", {"retention.ms": "-1"})
