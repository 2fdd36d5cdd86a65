"""Without Redis (refused, or stopped: connected but silent) the query API answers 503
store_unavailable with Retry-After, never 500 and never a hang; an open stream ends cleanly."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from redis.exceptions import ConnectionError as RedisConnectionError

from query_api.app import create_app
from query_api.live import account_events
from query_api.notifications import ChangeNotifications, UnknownPartition
from query_api.settings import QueryApiSettings
from stream_processors import layout
from tests.support.tokens import bearer

ROUTES = (
    "/accounts/a",
    "/accounts/a/transactions",
    "/accounts/a/stream",
    "/accounts/a/stream-token",
    "/accounts/a/statements/2026-11",
    "/owners/o/accounts",
    "/stats/daily?date=2026-11-26&currency=EUR",
    "/transfers/t",
    "/views",
)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A server that accepts connections and never answers, as a SIGSTOPped Redis does."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(128)
        yield int(server.getsockname()[1])


def _all_unavailable(redis_url: str, timeout_s: float = 2.0) -> dict[str, float]:
    settings = QueryApiSettings(redis_url=redis_url, query_api_redis_timeout_s=timeout_s)
    seconds = {}
    with TestClient(create_app(settings), raise_server_exceptions=False, headers=bearer()) as client:
        for path in (*ROUTES, "/readyz"):
            began = time.monotonic()
            response = client.get(path)
            seconds[path] = time.monotonic() - began
            assert response.status_code == 503, (path, response.text)
            assert response.headers["retry-after"] == "1"
            if path != "/readyz":
                assert response.json()["error"] == "store_unavailable", (path, response.text)
        assert client.get("/healthz").status_code == 200
    return seconds


def test_reads_without_redis_are_503_store_unavailable_with_retry_after() -> None:
    seconds = _all_unavailable(f"redis://127.0.0.1:{_closed_port()}/0")
    assert max(seconds.values()) < 1.0, seconds  # refused: at once, not after redis-py's retries


def test_a_stopped_redis_is_503_within_the_socket_timeout(silent_port: int) -> None:
    seconds = _all_unavailable(f"redis://127.0.0.1:{silent_port}/0", timeout_s=0.3)
    assert max(seconds.values()) < 1.5, seconds


class _Reads:
    """ViewReads whose store goes away after the first changes were read."""

    def __init__(self) -> None:
        self.calls = 0

    async def row(self, view: str, key: str) -> dict[str, str] | None:
        raise AssertionError("not used")

    async def read(self, view: str, *reads: Any) -> list[Any]:
        self.calls += 1
        if self.calls > 1:
            raise RedisConnectionError("Connection closed by server.")
        change = b'{"version":2,"type":"deposit","amount":5,"balance_after":5}'
        return [[change], []]


def test_a_stream_ends_cleanly_when_the_store_goes_away() -> None:
    async def collect() -> list[bytes]:
        feed = ChangeNotifications(None, "accounts", recheck_s=0.01)  # type: ignore[arg-type]
        frames = []
        async for chunk in account_events(_Reads(), feed, "a", summary=None, after_version=1,
                                          keepalive_s=15, recheck_s=0.01):  # fmt: skip
            frames.append(chunk)
        return frames

    frames = asyncio.run(collect())
    assert frames[1].startswith(b"event: change\nid: 2\n")
    assert frames[-1].startswith(b"retry: 2000\nevent: unavailable\ndata: ")
    assert b"store_unavailable" in frames[-1] and b"\nid:" not in frames[-1]  # the last id stays 2


class _CountingRedis:
    def __init__(self, status: dict[str, str]) -> None:
        self.status, self.calls = status, {"get": 0, "hkeys": 0, "hget": 0}

    async def get(self, key: str) -> bytes:
        self.calls["get"] += 1
        return b"4"

    async def hkeys(self, key: str) -> list[bytes]:
        self.calls["hkeys"] += 1
        assert key == layout.status("accounts", 4)
        return [k.encode() for k in self.status]

    async def hget(self, key: str, field: str) -> bytes:
        self.calls["hget"] += 1
        return b"100"


def test_the_partition_count_is_read_once_per_generation() -> None:
    redis = _CountingRedis({f"{layout.LAG}0": "0", f"{layout.LAG}1": "0", "updated_at_ms": "1"})
    feed = ChangeNotifications(redis, "accounts")  # type: ignore[arg-type]

    async def waits() -> None:
        for _ in range(5):
            assert await feed.wait(1, 50, 0.1)
        with pytest.raises(UnknownPartition):
            await feed.wait(2, 50, 0.1)

    asyncio.run(waits())
    # One HKEYS for the five waits, one more to re-check the unknown partition before refusing it.
    assert redis.calls == {"get": 6, "hkeys": 2, "hget": 5}
