"""The query API's read models over the real pipeline: transactions, owners, daily stats, readiness."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import httpx
import pycountry
import pytest

from tests.e2e.conftest import Services
from tests.e2e.test_slice import read_until

pytestmark = pytest.mark.e2e


def test_transactions_page_oldest_first_with_running_balance(running: Services, unique: str) -> None:
    c, q = running.commands, running.queries
    account = c.post(
        "/accounts", json={"owner_id": f"t-{unique}", "currency": "EUR", "overdraft_limit": 100}
    ).json()["account_id"]
    for amount in (500, 250, 100):
        c.post(f"/accounts/{account}/deposits", json={"amount": amount, "reference": f"r{amount}"})
    c.post(f"/accounts/{account}/withdrawals", json={"amount": 900})
    read_until(q, f"/accounts/{account}", lambda r: r.status_code == 200 and r.json()["version"] == 5)

    first = q.get(f"/accounts/{account}/transactions", params={"limit": 2}).json()
    assert [(i["version"], i["type"], i["amount"], i["balance_after"]) for i in first["items"]] == [
        (2, "deposit", 500, 500),
        (3, "deposit", 250, 750),
    ]
    assert first["items"][0]["reference"] == "r500" and first["next_cursor"] == "v3"
    second = q.get(f"/accounts/{account}/transactions", params={"limit": 2, "cursor": "v3"}).json()
    assert [(i["version"], i["balance_after"]) for i in second["items"]] == [(4, 850), (5, -50)]
    assert "reference" not in second["items"][1]
    last = q.get(
        f"/accounts/{account}/transactions", params={"limit": 2, "cursor": second["next_cursor"]}
    ).json()
    assert last == {"items": [], "next_cursor": None}

    assert q.get(f"/accounts/nobody-{unique}/transactions").status_code == 404
    assert q.get(f"/accounts/{account}/transactions", params={"cursor": "3"}).status_code == 422
    assert q.get(f"/accounts/{account}/transactions", params={"limit": 0}).status_code == 422


def test_accounts_by_owner_and_daily_totals(running: Services, unique: str) -> None:
    c, q = running.commands, running.queries
    # An ISO 4217 currency no other test uses; the day's totals from before this test are taken
    # off (a stack kept between runs has older ones).
    currency = random.choice(sorted({c.alpha_3 for c in pycountry.currencies} - {"EUR", "USD", "CHF"}))
    today = datetime.now(UTC).date().isoformat()
    before = q.get("/stats/daily", params={"date": today, "currency": currency}).json()
    owner = f"o-{unique}"
    ids = [
        c.post("/accounts", json={"owner_id": owner, "currency": currency}).json()["account_id"]
        for _ in range(2)
    ]
    c.post(f"/accounts/{ids[0]}/deposits", json={"amount": 1000})
    c.post(f"/accounts/{ids[1]}/deposits", json={"amount": 30})
    c.post(f"/accounts/{ids[0]}/withdrawals", json={"amount": 400})
    read_until(q, f"/accounts/{ids[0]}", lambda r: r.status_code == 200 and r.json()["version"] == 3)
    read_until(q, f"/accounts/{ids[1]}", lambda r: r.status_code == 200 and r.json()["version"] == 2)

    listed = q.get(f"/owners/{owner}/accounts").json()["items"]
    assert sorted(a["account_id"] for a in listed) == sorted(ids)
    assert {a["balance"] for a in listed} == {600, 30}
    assert q.get(f"/owners/nobody-{unique}/accounts").json() == {"items": []}

    stats = q.get("/stats/daily", params={"date": today, "currency": currency}).json()
    added = {k: stats[k] - before[k] for k in ("deposits", "withdrawals", "count")}
    assert added == {"deposits": 1030, "withdrawals": 400, "count": 3}
    assert q.get("/stats/daily", params={"date": "2026-02-30", "currency": "EUR"}).status_code == 422
    assert q.get("/stats/daily", params={"date": today}).status_code == 422


def test_readiness(running: Services) -> None:
    assert running.queries.get("/readyz").json() == {"status": "ready"}
    assert running.queries.get("/healthz").status_code == 200


def test_views_report_the_live_generation_with_checkpoints_and_lag(running: Services, unique: str) -> None:
    c, q = running.commands, running.queries
    c.post("/accounts", json={"owner_id": f"v-{unique}", "currency": "EUR"})

    def caught_up(response: httpx.Response) -> bool:
        live = [v for v in response.json()["items"] if v["state"] == "live"]
        return bool(live) and live[0]["lag_total"] == 0 and live[0]["reported_ms_ago"] is not None

    views = read_until(q, "/views", caught_up).json()["items"]
    [live] = [v for v in views if v["name"] == "accounts" and v["state"] == "live"]
    assert live["generation"] == live["current_generation"]
    assert live["checkpoints"] and all(offset >= 0 for offset in live["checkpoints"].values())
    assert live["lag_total"] == 0 and live["reported_ms_ago"] < 10_000


def test_metrics_count_requests_by_route_and_status(running: Services) -> None:
    q = running.queries
    q.get("/accounts/nobody-at-all")
    text = q.get("/metrics").text
    assert "# TYPE query_api_requests_total counter" in text
    assert 'query_api_requests_total{method="GET",route="/accounts/{account_id}",status="404"}' in text
    assert 'query_api_request_seconds_bucket{route="/accounts/{account_id}",le="+Inf"}' in text
    assert "query_api_streams " in text and 'query_api_read_your_writes_total{outcome="applied"}' in text
