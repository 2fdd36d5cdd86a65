"""Read-your-writes over plain HTTP: a command's position, passed as ?after=, is always visible."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Services

pytestmark = pytest.mark.e2e


def test_a_query_with_the_commands_position_always_sees_its_effect(running: Services, unique: str) -> None:
    c, q = running.commands, running.queries
    account = c.post("/accounts", json={"owner_id": f"ryw-{unique}", "currency": "EUR"})
    position = account.headers["X-Position"]
    account_id = account.json()["account_id"]
    assert q.get(f"/accounts/{account_id}", params={"after": position}).status_code == 200
    misses = []
    for n in range(1, 1001):
        deposit = c.post(f"/accounts/{account_id}/deposits", json={"amount": 1})
        view = q.get(f"/accounts/{account_id}", params={"after": deposit.headers["X-Position"]})
        if view.status_code != 200 or view.json()["version"] < deposit.json()["version"]:
            misses.append((n, view.status_code, view.text[:100]))
    assert misses == []
    assert q.get(f"/accounts/{account_id}").json()["balance"] == 1000


def test_without_a_projector_the_wait_ends_in_503_with_retry_after(running: Services, unique: str) -> None:
    c, q = running.commands, running.queries
    account_id = c.post("/accounts", json={"owner_id": f"ryw-{unique}", "currency": "EUR"}).json()[
        "account_id"
    ]
    projector = next(s for s in running.runner.started if s.name == "projector")
    running.runner.stop_all([projector])
    try:
        deposit = c.post(f"/accounts/{account_id}/deposits", json={"amount": 5})
        stale = q.get(
            f"/accounts/{account_id}", params={"after": deposit.headers["X-Position"], "wait_ms": 300}
        )
        assert stale.status_code == 503
        assert stale.headers["Retry-After"] == "1" and stale.json()["error"] == "not_yet_applied"
    finally:
        running.restart("projector")
    fresh = q.get(
        f"/accounts/{account_id}",
        params={"after": deposit.headers["X-Position"], "wait_ms": 10000},
        timeout=15,
    )
    assert fresh.status_code == 200 and fresh.json()["balance"] == 5
    assert q.get(f"/accounts/{account_id}", params={"after": "not-a-position"}).status_code == 422
