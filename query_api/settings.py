"""Typed settings of the query API, read from the environment once."""

from __future__ import annotations

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class QueryApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    redis_url: str = "redis://127.0.0.1:6379/0"
    kafka_bootstrap_servers: str = "127.0.0.1:9092"  # only for GET /schemas: the schemas topic
    redis_max_connections: int = 64
    # A Redis command without an answer this long (Redis stopped, or gone) fails: 503
    # store_unavailable, never a hanging request.
    query_api_redis_timeout_s: float = 2.0
    query_api_host: str = "127.0.0.1"
    query_api_port: int = 8002
    query_api_workers: int = 1
    query_api_max_streams: int = 1000  # live /stream connections per process
    query_api_stream_keepalive_s: float = 15.0
    # Web origins (scheme://host[:port], comma-separated) whose pages may call this API from a
    # browser; none by default. "*" allows any origin (tokens are still required).
    query_api_cors_origins: str = ""
    # Signs stream tokens (GET /accounts/{id}/stream-token). Unset: random per process, which is
    # only right with one worker per instance and one instance (main() refuses several workers).
    query_api_stream_token_secret: SecretStr | None = None
    query_api_stream_token_ttl_s: int = 300

    @property
    def cors_origins(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.query_api_cors_origins.split(",") if o.strip()]
