"""Typed settings of the query API, read from the environment once."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class QueryApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    redis_url: str = "redis://127.0.0.1:6379/0"
    kafka_bootstrap_servers: str = "127.0.0.1:9092"  # only for GET /schemas: the schemas topic
    redis_max_connections: int = 64
    query_api_host: str = "127.0.0.1"
    query_api_port: int = 8002
    query_api_workers: int = 1
    query_api_max_streams: int = 1000  # live /stream connections per process
    query_api_stream_keepalive_s: float = 15.0
