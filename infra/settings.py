"""Typed settings of the local stack and of topic provisioning, read from the environment once."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from pydantic_settings import BaseSettings, SettingsConfigDict

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


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

    @property
    def kafka_host_port(self) -> tuple[str, int]:
        first = self.kafka_bootstrap_servers.split(",")[0]
        host, _, port = first.rpartition(":")
        return host or "127.0.0.1", int(port)

    @property
    def controller_port(self) -> int:
        return self.kafka_controller_port or self.kafka_host_port[1] + 1

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
    topic_replication_factor: int = 1
    topic_min_insync_replicas: int = 1
