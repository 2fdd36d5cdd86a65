"""Typed settings of the command side's two services, read from the environment once."""

from __future__ import annotations

import os
import socket

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from producers.engine import idempotency


def _unique_instance() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class ProcessorSettings(BaseSettings):
    """Command processor: one consumer group over commands.<aggregate>, transactional appends."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    aggregate: str = "account"  # which registered aggregate this processor writes
    # Its topics are <kind>.<topic_suffix>; default the aggregate's name (tests use private ones).
    topic_suffix: str | None = None
    processor_group_id: str | None = None  # default: command-processor.<topic suffix>
    # Stable per instance (e.g. a StatefulSet ordinal) so a restart fences its own open
    # transaction at once; the default is unique per process, which is always safe.
    processor_instance_id: str = Field(default_factory=_unique_instance)
    processor_max_batch: int = 500
    processor_poll_timeout_s: float = 0.05
    # Bounds how long a crashed writer's open transaction can hold back read_committed readers.
    processor_transaction_timeout_ms: int = 10_000
    # A member that stops heartbeating this long loses its partitions to the others.
    processor_session_timeout_ms: int = 10_000
    # A member that does not poll for this long leaves the group (its partitions move).
    processor_max_poll_interval_ms: int = 300_000
    # Events per partition between snapshot checkpoints (snapshots go in the same transaction).
    processor_snapshot_every: int = 1000
    # How long a Kafka outage is waited out (retrying with backoff) before the processor gives up
    # and exits with one log line for its supervisor to restart it.
    processor_broker_wait_s: float = 600.0
    # Latency knobs (README, "Command side latency"). The producer's linger: records wait this
    # long to share a request. Each batch is flushed as soon as its commands are decided, and a
    # flush sends at once, so a longer linger costs no latency and saves requests under load.
    processor_linger_ms: float = 100.0
    # The consumer's fetch: the broker answers once it has fetch_min_bytes of new commands, or
    # after fetch_wait_max_ms. 1 byte: a command is fetched as soon as it is written.
    processor_fetch_min_bytes: int = 1
    processor_fetch_wait_max_ms: int = 10
    # The transactional producer's first retry backoff (transactional_loop.RETRY_BACKOFF_MS says
    # why it is not librdkafka's 100 ms).
    processor_retry_backoff_ms: int = 5
    # How long a batch that found more than one command queued (commands come faster than
    # transactions) waits for more before it is decided; a lone command is never held. Each batch
    # is one Kafka transaction, which costs the broker ~4.6 ms of CPU here whatever its size: under
    # load fewer, larger transactions, for up to this much latency.
    processor_batch_gather_ms: float = 10.0
    # The idempotency memory (README, "Idempotency"): a retry of a command handled within the
    # window (the results topic's retention) gets the first outcome. It is also bounded in
    # count, per processor, the oldest forgotten first: an outcome costs ~0.45 KB, so the default
    # holds ~90 MB: 11 minutes of commands at 300/s, 2.8 hours at 20/s.
    processor_idempotency_window_s: float = idempotency.WINDOW_S
    processor_idempotency_max_commands: int = idempotency.MAX_COMMANDS

    @property
    def topics(self) -> str:
        return self.topic_suffix or self.aggregate

    @property
    def group_id(self) -> str:
        return self.processor_group_id or f"command-processor.{self.topics}"


class CommandApiSettings(BaseSettings):
    """HTTP command API: produces commands and waits for their results."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    command_api_aggregates: str = ""  # comma-separated; empty: every registered aggregate
    # With one served aggregate only: its topics are <kind>.<topic_suffix> (benchmarks use private ones).
    topic_suffix: str | None = None
    command_api_host: str = "127.0.0.1"
    command_api_port: int = 8001
    command_timeout_s: float = 10.0
    command_api_workers: int = 1
    # A request body larger than this is refused (413) before it is read or parsed.
    command_api_max_body_bytes: int = 64 * 1024
    # The request line and headers together; larger is refused by the HTTP server (h11).
    command_api_max_header_bytes: int = 16 * 1024
    # Latency knobs (README, "Command side latency"). The commands producer's linger: 0 sends
    # each command at once (under load, commands still share requests while one is in flight).
    command_api_linger_ms: float = 0.0
    # The results consumer's fetch: the broker answers once it has this many bytes of results,
    # or after fetch_wait_max_ms.
    command_api_results_fetch_min_bytes: int = 1
    command_api_results_fetch_wait_max_ms: int = 10

    def served_aggregates(self) -> list[str]:
        from producers.aggregates import aggregates  # the registry imports the routes, which import this

        named = [a.strip() for a in self.command_api_aggregates.split(",") if a.strip()]
        served = named or list(aggregates())
        if self.topic_suffix and len(served) != 1:
            raise ValueError("TOPIC_SUFFIX needs exactly one aggregate in COMMAND_API_AGGREGATES")
        return served

    def topics(self, aggregate: str) -> str:
        return self.topic_suffix or aggregate
