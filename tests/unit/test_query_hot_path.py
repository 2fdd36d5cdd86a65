"""The hot read (query_api/hot_path.py) answers GET /accounts/{id} exactly like the declared
FastAPI route: each request is sent plain (the hot path) and with a query parameter the route
ignores (FastAPI), and the two answers compared."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from auth.tokens import ACCOUNTS_READ, OPERATOR
from query_api import hot_path
from query_api.app import Adapters, create_app
from query_api.settings import QueryApiSettings
from stream_processors.store import ViewNotReady, ViewRebuilding
from tests.support.tokens import bearer
from tests.unit.test_query_edge import client

STAFF = bearer()
ALICE = bearer("alice", (ACCOUNTS_READ,), owner="alice")
COMPARED_HEADERS = ("content-type", "etag", "www-authenticate", "retry-after")


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, list[str]]]:
    """The app of tests/unit/test_query_edge.py (alices owned by alice, bobs by bob), and the ids
    the hot path answered."""
    hot: list[str] = []
    caller = hot_path.authorized

    async def counted(request: Any, scope: str) -> Any:
        hot.append(request.path_params["account_id"])
        return await caller(request, scope)

    monkeypatch.setattr(hot_path, "authorized", counted)
    with client() as c:
        yield c, hot


def _same(c: TestClient, path: str, headers: dict[str, str]) -> Any:
    fast, declared = c.get(path, headers=headers), c.get(f"{path}?unused=1", headers=headers)
    assert (fast.status_code, fast.content) == (declared.status_code, declared.content)
    for name in COMPARED_HEADERS:
        assert fast.headers.get(name) == declared.headers.get(name), name
    return fast


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/accounts/alices", STAFF, 200),
        ("/accounts/alices", ALICE, 200),
        ("/accounts/bobs", ALICE, 404),  # another customer's: like a missing one
        ("/accounts/nobody", STAFF, 404),
        ("/accounts/alices", bearer("ops", (OPERATOR,)), 403),
        ("/accounts/alices", {"authorization": "Bearer not-a-jwt"}, 401),
        ("/accounts/alices", {}, 401),
    ],
)
def test_the_hot_path_answers_like_the_route(
    served: tuple[TestClient, list[str]], path: str, headers: dict[str, str], status: int
) -> None:
    c, hot = served
    assert _same(c, path, headers).status_code == status
    # Authentication answers 401 before either; every other answer came from the hot path once.
    assert hot == ([] if status == 401 else [path.rsplit("/", 1)[1]])


def test_an_etag_that_matches_is_304_on_both(served: tuple[TestClient, list[str]]) -> None:
    c, _ = served
    etag = c.get("/accounts/alices", headers=STAFF).headers["etag"]
    assert _same(c, "/accounts/alices", {**STAFF, "if-none-match": f'"0", {etag}'}).status_code == 304
    assert _same(c, "/accounts/alices", {**STAFF, "if-none-match": '"999"'}).status_code == 200


@pytest.mark.parametrize("path", ["/accounts/" + "x" * 101, "/accounts/a%20b", "/accounts/a/b"])
def test_what_the_hot_path_does_not_take_goes_on_to_fastapi(
    served: tuple[TestClient, list[str]], path: str
) -> None:
    c, hot = served
    answer = c.get(path, headers=STAFF)
    assert answer.status_code in (404, 422) and "error" in answer.json()
    assert hot == []


def test_the_route_template_names_hot_reads_in_the_metrics(served: tuple[TestClient, list[str]]) -> None:
    c, hot = served
    c.get("/accounts/alices", headers=STAFF)
    assert hot == ["alices"]
    text = c.get("/metrics", headers=STAFF).text
    assert 'query_api_requests_total{method="GET",route="/accounts/{account_id}",status="200"} 1' in text


class _FailingReads:
    def __init__(self, error: Exception) -> None:
        self.error = error

    async def row(self, view: str, key: str) -> dict[str, str] | None:
        raise self.error

    async def read(self, view: str, *reads: Any) -> list[Any]:
        raise self.error


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (RedisConnectionError("Connection refused."), "store_unavailable"),
        (RedisTimeoutError("Timeout reading from socket"), "store_unavailable"),
        (ViewNotReady("no generation"), "view_not_ready"),
        (ViewRebuilding("being rebuilt"), "view_rebuilding"),
    ],
)
def test_store_failures_are_the_same_503(error: Exception, code: str) -> None:
    @asynccontextmanager
    async def failing(_: QueryApiSettings) -> AsyncIterator[Adapters]:
        yield Adapters(_FailingReads(error), {}, None)  # type: ignore[arg-type]

    with TestClient(create_app(QueryApiSettings(), adapters=failing)) as c:
        answer = _same(c, "/accounts/alices", STAFF)
    assert (answer.status_code, answer.json()["error"]) == (503, code)
    assert answer.headers["retry-after"]


def test_start_up_objects_are_out_of_the_collectors_way(served: tuple[TestClient, list[str]]) -> None:
    # Once per process (query_api/app.py): a full collection then skips the app and its libraries.
    assert gc.get_freeze_count() > 0
