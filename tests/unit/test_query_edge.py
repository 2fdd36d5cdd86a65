"""The query API's edge with fake views: routing errors in {error, detail}, CORS for browsers,
stream tokens for EventSource, and the live-stream limit taken exactly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient

from auth.tokens import ACCOUNTS_READ
from query_api.app import Adapters, create_app
from query_api.notifications import ChangeNotifications
from query_api.settings import QueryApiSettings
from query_api.stream_tokens import AUDIENCE
from stream_processors.views import accounts
from tests.support.fake_views import FakeViewReads, FakeViews, FakeViewStore
from tests.support.tokens import bearer
from tests.unit.test_auth import _projected

ORIGIN = "https://app.example"


def client(**settings: Any) -> TestClient:
    views = FakeViews()
    views.set_current(accounts.NAME, 1, {"state": "live"})
    store = FakeViewStore(views, accounts.NAME, 1)
    for offset, (account, owner) in enumerate((("alices", "alice"), ("bobs", "bob"))):
        opened = {"owner_id": owner, "currency": "EUR", "overdraft_limit": 0}
        asyncio.run(store.apply([_projected(accounts.project, account, "AccountOpened", opened, offset)]))

    @asynccontextmanager
    async def fake(_: QueryApiSettings) -> AsyncIterator[Adapters]:
        yield Adapters(FakeViewReads(views), {}, None)  # type: ignore[arg-type]

    return TestClient(create_app(QueryApiSettings(**settings), adapters=fake))


@pytest.fixture
def plain() -> Iterator[TestClient]:
    with client() as c:
        yield c


def test_unknown_paths_and_methods_answer_in_the_error_body(plain: TestClient) -> None:
    staff = bearer()
    missing = plain.get("/nowhere", headers=staff)
    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
    wrong = plain.delete("/accounts/alices", headers=staff)
    assert (wrong.status_code, wrong.json()["error"]) == (405, "method_not_allowed")
    assert "GET" in wrong.headers["allow"]
    # Without CORS configured, a preflight is just a method this API does not have.
    preflight = plain.options("/accounts/alices", headers={"Origin": ORIGIN})
    assert (preflight.status_code, preflight.json()["error"]) == (405, "method_not_allowed")
    assert "access-control-allow-origin" not in preflight.headers


def test_cors_origins_come_from_a_setting_and_preflights_are_answered() -> None:
    with client(query_api_cors_origins=f"{ORIGIN}, http://localhost:3000") as c:
        asked = {"Origin": ORIGIN, "Access-Control-Request-Method": "GET",
                 "Access-Control-Request-Headers": "authorization, last-event-id"}  # fmt: skip
        preflight = c.options("/accounts/alices/stream", headers=asked)
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == ORIGIN
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
        read = c.get("/accounts/alices", headers={**bearer(), "Origin": ORIGIN})
        assert read.status_code == 200 and read.headers["access-control-allow-origin"] == ORIGIN
        assert "etag" in read.headers["access-control-expose-headers"].lower()
        refused = c.options("/accounts/alices", headers={**asked, "Origin": "https://evil.example"})
        assert (refused.status_code, refused.json()["error"]) == (400, "cors_refused")


def test_a_stream_token_is_for_one_stream_and_the_callers_own_accounts(plain: TestClient) -> None:
    alice = bearer("alice", (ACCOUNTS_READ,), owner="alice")
    issued = plain.get("/accounts/alices/stream-token", headers=alice)
    assert issued.status_code == 200, issued.text
    body = issued.json()
    assert body["stream_url"] == f"/accounts/alices/stream?stream_token={body['token']}"
    assert 0 < body["expires_in"] <= 300
    assert plain.get("/accounts/bobs/stream-token", headers=alice).status_code == 404  # not hers
    # It opens nothing else: another stream, or any other route.
    for path in ("/accounts/bobs/stream", "/accounts/alices", "/accounts/alices/transactions"):
        response = plain.get(path, params={"stream_token": body["token"]})
        assert (response.status_code, response.json()["error"]) == (401, "unauthorized"), path
    forged = jwt.encode({"aud": AUDIENCE, "sub": "x", "path": "/accounts/bobs/stream",
                         "exp": int(time.time()) + 60}, "guess", algorithm="HS256")  # fmt: skip
    assert plain.get("/accounts/bobs/stream", params={"stream_token": forged}).status_code == 401


def test_the_stream_limit_is_taken_when_admitted_so_it_holds_exactly() -> None:
    feed = ChangeNotifications(None, accounts.NAME)  # type: ignore[arg-type]
    slots = [feed.admit_stream(3) for _ in range(5)]
    assert [s is not None for s in slots] == [True, True, True, False, False]
    assert feed.streams == 3
    first = slots[0]
    assert first is not None
    first.release()
    first.release()  # exactly once
    assert feed.streams == 2 and feed.admit_stream(3) is not None and feed.admit_stream(3) is None
