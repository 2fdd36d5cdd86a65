"""Typed settings of the projector service, read from the environment once."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class ProjectorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    redis_url: str = "redis://127.0.0.1:6379/0"
    projector_view: str = "accounts"  # which view this process builds (stream_processors/views/registry.py)
    aggregate: str | None = None  # read events.<aggregate> instead of the view's own source
    # Most records one MULTI/EXEC applies (with its checkpoints); also faust's max_poll_records, so
    # one fetch is at most one batch. Larger batches amortize the transaction and the checkpoint
    # read; the view is visible per batch.
    projector_batch_size: int = 1000
    # Whole fetches go from the consumer to the projector (read_committed.FetchedBatches), past
    # faust's per-message Event and stream path (~70 µs of CPU per event). This many fetches are
    # queued ahead of the projector; the consumer stops fetching while they wait.
    projector_prefetch_batches: int = 4
    # Most bytes one fetch returns per partition (faust's consumer_max_fetch_size; its default).
    projector_fetch_max_bytes_per_partition: int = 1_048_576
    projector_log_level: str = "info"
    projector_metrics_host: str = "127.0.0.1"
    projector_metrics_port: int = 8011  # GET /metrics (Prometheus text)
    # A crashed projector's partitions move to a live one after this long (faust's default is 60 s).
    projector_session_timeout_s: float = 10.0
    # A Redis command without an answer this long (Redis stopped, or gone) fails and is retried.
    projector_redis_timeout_s: float = 5.0
    projector_status_interval_s: float = 1.0  # how often lag and a heartbeat go to Redis (/views)
    # Project into this generation instead of the current one (a rebuild or a verification).
    projector_generation: int | None = None
    # Catch-up workers for a rebuild a projector starts itself (after an operator's offset reset).
    projector_rebuild_workers: int = 2
    stack_dir: Path = Path(".stack/dev")  # their logs go to <stack_dir>/services/logs
    # How often a following projector removes the consumer groups of abandoned generations.
    projector_cleanup_interval_s: float = 30.0
