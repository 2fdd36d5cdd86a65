"""Typed settings of the local stack and of topic provisioning, read from the environment once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
# In a cluster, node N listens on the configured client and controller ports + (N - 1) * 10.
NODE_PORT_STEP = 10


def replication_factor(brokers: int) -> int:
    """Copies of every partition on a cluster of `brokers` (3 at most: the usual choice)."""
    return min(brokers, 3)


def min_insync_replicas(brokers: int) -> int:
    """With 3 copies, 2 must have a write before it is acknowledged: one broker may fail."""
    return 2 if replication_factor(brokers) >= 3 else 1


@dataclass(frozen=True)
class KafkaNode:
    """One node of the local Kafka (broker and KRaft controller in one process)."""

    node_id: int
    host: str
    port: int  # clients and the other brokers
    controller_port: int
    folder: str  # under STACK_DIR: `kafka` for the single broker, `kafka-<id>` in a cluster

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class StackSettings(BaseSettings):
    """Where the local broker and Redis listen comes from the same variables the services read."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    redis_url: str = "redis://127.0.0.1:6379/0"
    stack_dir: Path = Path(".stack/dev")
    cache_dir: Path = Path(".cache")
    kafka_version: str = "4.1.1"
    kafka_controller_port: int | None = None  # default: the Kafka port + 1
    kafka_heap: str = "512m"
    # 1: one broker (the default). 3: a KRaft quorum of three combined nodes on loopback, for
    # fault tests: node N on the Kafka and controller ports + (N - 1) * 10, data in kafka-N/.
    kafka_brokers: int = Field(default=1, ge=1, le=5)

    @property
    def kafka_host_port(self) -> tuple[str, int]:
        first = self.kafka_bootstrap_servers.split(",")[0]
        host, _, port = first.rpartition(":")
        return host or "127.0.0.1", int(port)

    @property
    def controller_port(self) -> int:
        return self.kafka_controller_port or self.kafka_host_port[1] + 1

    @property
    def kafka_nodes(self) -> list[KafkaNode]:
        host, port = self.kafka_host_port
        if self.kafka_brokers == 1:
            return [KafkaNode(1, host, port, self.controller_port, "kafka")]
        step = NODE_PORT_STEP
        return [
            KafkaNode(n, host, port + (n - 1) * step, self.controller_port + (n - 1) * step, f"kafka-{n}")
            for n in range(1, self.kafka_brokers + 1)
        ]

    @property
    def bootstrap_servers(self) -> str:
        """Every node's client address: what clients of the local stack are given."""
        return ",".join(node.address for node in self.kafka_nodes)

    @property
    def redis_host_port(self) -> tuple[str, int]:
        url = urlparse(self.redis_url)
        return url.hostname or "127.0.0.1", url.port or 6379

    def check_loopback(self) -> None:
        for what, (host, _) in (
            ("KAFKA_BOOTSTRAP_SERVERS", self.kafka_host_port),
            ("REDIS_URL", self.redis_host_port),
        ):
            if host not in LOOPBACK:
                raise ValueError(f"the local stack listens on loopback only, but {what} names {host}")


class TopicSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    aggregates: str = ""  # comma-separated topic suffixes; default: every registered aggregate
    topic_partitions: int = 12
    kafka_brokers: int = 1  # the local stack's (StackSettings); the durability defaults follow it
    topic_replication_factor: int = 1  # default: 1 on one broker, 3 on a cluster
    topic_min_insync_replicas: int = 1  # default: 1 on one broker, 2 on a cluster

    @model_validator(mode="before")
    @classmethod
    def _durability_from_brokers(cls, data: Any) -> Any:
        if isinstance(data, dict):
            brokers = int(data.get("kafka_brokers") or 1)
            data.setdefault("topic_replication_factor", replication_factor(brokers))
            data.setdefault("topic_min_insync_replicas", min_insync_replicas(brokers))
        return data
