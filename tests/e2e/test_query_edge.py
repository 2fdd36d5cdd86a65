"""The query API's edge on the real stack: a position on a partition the log does not have is
refused at once, and a browser-style client (no Authorization header) follows a live stream with a
stream token and resumes with `last_event_id`."""

from __future__ import annotations

import httpx
import pytest

from auth.tokens import ACCOUNTS_READ, ACCOUNTS_WRITE
from tests.e2e.conftest import QUERY_PORT, Services
from tests.e2e.test_live_updates import EventStream
from tests.support.tokens import bearer

pytestmark = pytest.mark.e2e


def test_a_position_on_a_partition_that_does_not_exist_is_422_not_a_wait(running: Services) -> None:
    response = running.queries.get("/accounts/anything", params={"after": "999999-1", "wait_ms": 10_000})
    assert (response.status_code, response.json()["error"]) == (422, "unknown_partition")
    assert "partitions 0 to" in response.json()["detail"]
    assert "retry-after" not in response.headers


def test_a_stream_token_opens_the_stream_without_a_header_and_resumes(running: Services, unique: str) -> None:
    owner = f"se-{unique}"
    customer = bearer(f"user-{owner}", (ACCOUNTS_READ, ACCOUNTS_WRITE), owner=owner)
    c = running.commands
    account = c.post("/accounts", json={"owner_id": owner, "currency": "EUR"}, headers=customer).json()
    deposit = c.post(f"/accounts/{account['account_id']}/deposits", json={"amount": 5}, headers=customer)
    position = deposit.json()["position"]
    q = running.queries
    assert q.get(f"/accounts/{account['account_id']}", params={"after": position}).status_code == 200
    issued = q.get(f"/accounts/{account['account_id']}/stream-token", headers=customer).json()

    timeout = httpx.Timeout(5, read=15)
    with httpx.Client(base_url=f"http://127.0.0.1:{QUERY_PORT}", timeout=timeout) as browser:  # no token
        with browser.stream("GET", issued["stream_url"]) as response:
            assert response.status_code == 200, response.read()
            first = EventStream(response).next()
        assert (first.event, first.id, first.data["balance"]) == ("account", 2, 5)
        c.post(f"/accounts/{account['account_id']}/deposits", json={"amount": 7}, headers=customer)
        resumed_url = f"{issued['stream_url']}&last_event_id=2"
        with browser.stream("GET", resumed_url) as response:
            change = EventStream(response).next()
        assert (change.event, change.id, change.data["amount"]) == ("change", 3, 7)
        assert browser.get(f"/accounts/{account['account_id']}").status_code == 401  # stream only
