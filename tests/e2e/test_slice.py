"""The first slice end to end: the four services as processes, against the real Kafka and Redis."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Services

pytestmark = pytest.mark.e2e


def read_until(queries: httpx.Client, path: str, done: Any, within_s: float = 30) -> httpx.Response:
    deadline = time.monotonic() + within_s
    while True:
        response = queries.get(path)
        if done(response) or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


def test_open_deposit_twice_and_read_the_view(running: Services, unique: str) -> None:
    commands, queries = running.commands, running.queries
    opened = commands.post("/accounts", json={"owner_id": f"owner-{unique}", "currency": "EUR"})
    assert opened.status_code == 201, opened.text
    account_id = opened.json()["account_id"]
    assert opened.json()["version"] == 1
    assert opened.headers["X-Position"] == opened.json()["position"]

    first = commands.post(f"/accounts/{account_id}/deposits", json={"amount": 1250})
    second = commands.post(f"/accounts/{account_id}/deposits", json={"amount": 750, "reference": "r"})
    assert (first.status_code, second.status_code) == (200, 200), (first.text, second.text)
    assert (first.json()["version"], second.json()["version"]) == (2, 3)

    view = read_until(
        queries, f"/accounts/{account_id}", lambda r: r.status_code == 200 and r.json()["version"] == 3
    )
    assert view.status_code == 200, view.text
    body = view.json()
    assert (body["balance"], body["version"], body["currency"]) == (2000, 3, "EUR")
    assert body["owner_id"] == f"owner-{unique}"
    assert view.headers["ETag"] == '"3"'
    assert queries.get(f"/accounts/{account_id}", headers={"If-None-Match": '"3"'}).status_code == 304


def test_the_same_idempotency_key_appends_once(running: Services, unique: str) -> None:
    commands, queries = running.commands, running.queries
    account_id = commands.post("/accounts", json={"owner_id": "o", "currency": "EUR"}).json()["account_id"]
    answers = [
        commands.post(
            f"/accounts/{account_id}/deposits",
            json={"amount": 100},
            headers={"Idempotency-Key": f"dep-{unique}"},
        ).json()
        for _ in range(3)
    ]
    assert answers[0] == answers[1] == answers[2]
    assert answers[0]["version"] == 2
    view = read_until(
        queries, f"/accounts/{account_id}", lambda r: r.status_code == 200 and r.json()["version"] == 2
    )
    assert view.json()["balance"] == 100


def test_bad_input_gets_clear_errors_never_500(running: Services, unique: str) -> None:
    commands, queries = running.commands, running.queries
    unknown = commands.post(f"/accounts/nobody-{unique}/deposits", json={"amount": 5})
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "account_not_found"

    malformed = commands.post("/accounts", content=b"{not json", headers={"content-type": "application/json"})
    assert malformed.status_code == 422

    missing = commands.post("/accounts", json={"currency": "EUR"})
    assert missing.status_code == 422
    assert [f["field"] for f in missing.json()["fields"]] == ["owner_id"]

    assert queries.get(f"/accounts/nobody-{unique}").status_code == 404


def test_the_projector_exposes_prometheus_metrics(running: Services) -> None:
    from tests.e2e.conftest import PROJECTOR_PORT

    account = running.commands.post("/accounts", json={"owner_id": "m", "currency": "EUR"}).json()[
        "account_id"
    ]
    assert (
        read_until(running.queries, f"/accounts/{account}", lambda r: r.status_code == 200).status_code == 200
    )
    text = httpx.get(f"http://127.0.0.1:{PROJECTOR_PORT}/metrics", timeout=5).text
    for name in (
        "projector_events_applied_total",
        "projector_dead_letters_total",
        "projector_last_batch_seconds",
        "projector_lag_events",
    ):
        assert f"# TYPE {name}" in text
    applied = [line for line in text.splitlines() if line.startswith("projector_events_applied_total{")]
    assert applied and float(applied[0].rsplit(" ", 1)[1]) > 0
