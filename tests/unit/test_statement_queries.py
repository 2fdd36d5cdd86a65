"""The statements read model through the query API, over the in-memory store injected into the
query API's composition root: routes, queries and error mapping without servers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from query_api.app import Adapters, create_app
from query_api.settings import QueryApiSettings
from stream_processors.store import ProjectedEvent
from stream_processors.views import statements
from stream_processors.views.base import UnknownEventType
from tests.support.fake_views import FakeViewReads, FakeViews, FakeViewStore
from tests.support.tokens import bearer


def client(views: FakeViews) -> TestClient:
    @asynccontextmanager
    async def fake(_: QueryApiSettings) -> AsyncIterator[Adapters]:
        yield Adapters(FakeViewReads(views), {}, None)  # type: ignore[arg-type]

    return TestClient(create_app(QueryApiSettings(), adapters=fake), headers=bearer())


def events(*history: tuple[str, datetime, dict[str, Any]]) -> list[ProjectedEvent]:
    return [
        ProjectedEvent(
            0,
            version,
            statements.project(name, {"aggregate_id": "a", "version": version, "occurred_at": at, **payload}),
        )
        for version, (name, at, payload) in enumerate(history, start=1)
    ]


JAN, FEB = datetime(2026, 1, 31, 23, 59, 59, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)
HISTORY = events(
    ("AccountOpened", JAN, {"owner_id": "o", "currency": "EUR", "overdraft_limit": 0}),
    ("MoneyDeposited", JAN, {"amount": 100, "reference": None, "channel": "http"}),
    ("MoneyWithdrawn", FEB, {"amount": 30, "reference": None}),
    ("AccountDebited", FEB, {"amount": 20, "transfer_id": "t", "counterparty_account_id": "b"}),
    ("OverdraftLimitChanged", FEB, {"overdraft_limit": 10}),
)


def test_a_months_statement_carries_the_earlier_months_over() -> None:
    views = FakeViews()
    views.set_current(statements.NAME, 1, {"state": "live"})
    asyncio.run(FakeViewStore(views, statements.NAME, 1).apply(HISTORY))
    with client(views) as http:
        january = http.get("/accounts/a/statements/2026-01")
        assert january.status_code == 200
        assert january.json() == {
            "account_id": "a", "month": "2026-01", "currency": "EUR", "opening_balance": 0, "deposits": 100,
            "withdrawals": 0, "transfers_in": 0, "transfers_out": 0, "closing_balance": 100,
        }  # fmt: skip
        february = http.get("/accounts/a/statements/2026-02").json()
        assert (february["opening_balance"], february["withdrawals"], february["transfers_out"]) == (
            100,
            30,
            20,
        )
        assert february["closing_balance"] == 50
        before = http.get("/accounts/a/statements/2025-12")
        assert (before.status_code, before.json()["error"]) == (404, "statement_not_found")
        assert http.get("/accounts/nobody/statements/2026-01").status_code == 404
        assert http.get("/accounts/a/statements/2026-13").json()["error"] == "validation_error"


def test_a_statements_view_being_backfilled_answers_503_view_rebuilding() -> None:
    views = FakeViews()
    views.set_current(statements.NAME, 1, {"state": "rebuilding"})
    with client(views) as http:
        response = http.get("/accounts/a/statements/2026-01")
        assert (response.status_code, response.json()["error"]) == (503, "view_rebuilding")
        assert response.headers["retry-after"] == "2"
    with client(FakeViews()) as http:
        assert http.get("/accounts/a/statements/2026-01").json()["error"] == "view_not_ready"


def test_a_transfer_event_is_not_an_account_event() -> None:
    with pytest.raises(UnknownEventType):
        statements.project("TransferRequested", {"aggregate_id": "t", "version": 1, "occurred_at": JAN})
