"""The gateway (nginx with deploy/gateway.conf, as `make run` and compose run it) on the real stack:
routing by method, streaming, limits and its own errors as JSON."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.e2e.conftest import Services, wait_ready
from tests.e2e.test_live_updates import stream
from tests.e2e.test_slice import read_until

pytestmark = pytest.mark.e2e


def assert_gateway_error(response: httpx.Response, status: int, error: str) -> None:
    """An answer of nginx itself, in the APIs' shape."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "detail"} and body["error"] == error and body["detail"], body


def open_account(g: httpx.Client, unique: str) -> str:
    opened = g.post("/accounts", json={"owner_id": f"gw-{unique}", "currency": "EUR"})
    assert opened.status_code == 201, opened.text
    return str(opened.json()["account_id"])


def test_a_write_reaches_the_command_api_and_a_read_the_query_api(running: Services, unique: str) -> None:
    g = running.gateway
    account = open_account(g, unique)
    deposit = g.post(f"/accounts/{account}/deposits", json={"amount": 700})
    assert deposit.status_code == 200, deposit.text

    view = g.get(f"/accounts/{account}", params={"after": deposit.headers["X-Position"]})
    assert view.status_code == 200, view.text
    assert (view.json()["account_id"], view.json()["balance"]) == (account, 700)
    # the bearer token went through both ways: without one, the APIs' own 401
    anonymous = httpx.Client(base_url=g.base_url, timeout=5)
    assert anonymous.get(f"/accounts/{account}").json()["error"] == "unauthorized"
    assert anonymous.post("/accounts", json={}).json()["error"] == "unauthorized"


def test_the_live_stream_is_not_buffered_and_resumes_with_last_event_id(
    running: Services, unique: str
) -> None:
    g = running.gateway
    account = open_account(g, unique)
    read_until(running.queries, f"/accounts/{account}", lambda r: r.status_code == 200)

    began = time.monotonic()
    with stream(g, account) as events:
        first = events.next()  # sent at once by the query API; a buffering proxy would sit on it
        assert time.monotonic() - began < 3
        assert (first.event, first.id) == ("account", 1)
        assert g.post(f"/accounts/{account}/deposits", json={"amount": 5}).status_code == 200
        change = events.next()
        assert (change.event, change.id, change.data["amount"]) == ("change", 2, 5)
    g.post(f"/accounts/{account}/deposits", json={"amount": 6})
    with stream(g, account, last_event_id=2) as events:  # Last-Event-ID reaches the query API
        resumed = events.next()
        assert (resumed.event, resumed.id, resumed.data["amount"]) == ("change", 3, 6)


def test_a_body_over_64k_is_refused_by_the_gateway_as_json(running: Services) -> None:
    response = running.gateway.post(
        "/accounts", content=b'{"owner_id": "' + b"x" * 100_000 + b'"}',
        headers={"content-type": "application/json"},
    )  # fmt: skip
    assert_gateway_error(response, 413, "body_too_large")


def test_a_header_over_16k_is_refused_by_the_gateway_as_json(running: Services) -> None:
    response = running.gateway.get("/accounts/any", headers={"x-padding": "y" * 20_000})
    assert_gateway_error(response, 431, "header_too_large")
    long_uri = running.gateway.get("/accounts/any", params={"padding": "y" * 20_000})
    assert_gateway_error(long_uri, 414, "uri_too_long")


def test_with_the_query_api_down_a_read_is_502_json_and_writes_still_go_through(
    running: Services, unique: str
) -> None:
    g = running.gateway
    account = open_account(g, unique)
    query_api = next(s for s in running.runner.started if s.name == "query-api")
    running.runner.stop_all([query_api])
    try:
        assert_gateway_error(g.get(f"/accounts/{account}"), 502, "upstream_unavailable")
        assert g.post(f"/accounts/{account}/deposits", json={"amount": 1}).status_code == 200
    finally:
        running.restart("query-api")
        wait_ready(running.queries)
    assert g.get(f"/accounts/{account}").status_code == 200
