"""Without Redis the query API answers 503 with Retry-After, never 500."""

from __future__ import annotations

import socket

from fastapi.testclient import TestClient

from query_api.app import create_app
from query_api.settings import QueryApiSettings
from tests.support.tokens import bearer


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_reads_without_redis_are_503_with_retry_after() -> None:
    settings = QueryApiSettings(redis_url=f"redis://127.0.0.1:{_closed_port()}/0")
    with TestClient(create_app(settings), raise_server_exceptions=False, headers=bearer()) as client:
        for path in ("/accounts/a", "/accounts/a/transactions", "/owners/o/accounts", "/views", "/readyz"):
            response = client.get(path)
            assert response.status_code == 503, (path, response.text)
            assert response.headers["retry-after"] == "1"
        assert client.get("/accounts/a").json()["error"] == "redis_unavailable"
        assert client.get("/healthz").status_code == 200
