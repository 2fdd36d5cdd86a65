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
    projector_batch_size: int = 1000
    projector_batch_within_s: float = 0.02
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
