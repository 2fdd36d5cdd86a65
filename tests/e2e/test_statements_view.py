"""A read model added later: the statements view, built by its own projector process from the whole
account log on its first start (queries answer 503 until it has caught up), served by
GET /accounts/{id}/statements/{YYYY-MM}, without touching the views already serving."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
import redis
import schemathesis

from infra.services import Service, services
from stream_processors import layout
from stream_processors.generations import Generations
from stream_processors.views import statements
from tests.conftest import Stack
from tests.e2e.conftest import COMMAND_PORT, PROJECTOR_PORT, QUERY_PORT, Services
from tests.e2e.test_slice import read_until

pytestmark = pytest.mark.e2e
WAITING = {"view_not_ready", "view_rebuilding", "not_yet_applied"}


def statements_projector() -> Service:
    """The deployed one when the service list has it, else one for this test."""
    listed = [
        s
        for s in services(COMMAND_PORT, QUERY_PORT, PROJECTOR_PORT)
        if s.module == "stream_processors.app" and s.env.get("PROJECTOR_VIEW") == statements.NAME
    ]
    port = PROJECTOR_PORT + 2
    env = {"PROJECTOR_VIEW": statements.NAME, "PROJECTOR_METRICS_PORT": str(port)}
    own = Service(
        "projector-statements", "stream_processors.app", "projector", f"http://127.0.0.1:{port}/metrics", env
    )
    return listed[0] if listed else own


def forget_the_view(client: redis.Redis) -> None:
    """As if the statements view had never been built: no generation in Redis."""
    gens = Generations(client, statements.NAME)
    known = gens.known()
    client.delete(layout.current(statements.NAME))
    for generation in known:
        gens.drop(generation)


@pytest.mark.timeout(600)
def test_a_new_read_model_is_backfilled_from_the_log_then_served(
    running: Services, stack: Stack, unique: str
) -> None:
    c, q = running.commands, running.queries
    client = redis.Redis.from_url(stack.redis_url)
    service = statements_projector()
    running.runner.stop_all([service])  # the deployed one, if it runs: this is its first start
    forget_the_view(client)
    accounts_view = Generations(client, "accounts")
    accounts_before = accounts_view.current()

    # History written before the read model exists.
    account = c.post("/accounts", json={"owner_id": f"st-{unique}", "currency": "EUR"}).json()["account_id"]
    for path, amount in (("deposits", 1000), ("deposits", 250), ("withdrawals", 300)):
        response = c.post(f"/accounts/{account}/{path}", json={"amount": amount})
        assert response.status_code == 200, response.text
    position = response.headers["X-Position"]
    url = f"/accounts/{account}/statements"
    unbuilt = q.get(f"{url}/2026-01")
    assert (unbuilt.status_code, unbuilt.json()["error"]) == (503, "view_not_ready")
    assert q.get("/readyz").status_code == 200  # a view not built yet keeps no other view from serving

    began = time.monotonic()
    running.runner.start(service)
    running.runner.wait_healthy(service)
    items = read_until(q, f"/accounts/{account}/transactions", lambda r: r.status_code == 200).json()["items"]
    month = items[0]["occurred_at"][:7]
    seen = set()
    deadline = time.monotonic() + 300
    while (
        response := q.get(f"{url}/{month}", params={"after": position, "wait_ms": 500})
    ).status_code != 200:
        assert response.status_code == 503 and response.json()["error"] in WAITING, response.text
        assert "retry-after" in response.headers
        seen.add(response.json()["error"])
        assert time.monotonic() < deadline, f"never served: {response.text}"
        time.sleep(0.2)
    print(f"statements served after {time.monotonic() - began:.1f}s; answered before: {sorted(seen)}")

    assert response.json() == {
        "account_id": account,
        "month": month,
        "currency": "EUR",
        "opening_balance": 0,
        "deposits": 1250,
        "withdrawals": 300,
        "transfers_in": 0,
        "transfers_out": 0,
        "closing_balance": 950,
    }
    schema = schemathesis.openapi.from_url(f"http://127.0.0.1:{QUERY_PORT}/openapi.json")
    schema["/accounts/{account_id}/statements/{month}"]["GET"].validate_response(response)
    earlier = q.get(f"{url}/2000-01")
    assert (earlier.status_code, earlier.json()["error"]) == (404, "statement_not_found")

    # Live from then on.
    after = c.post(f"/accounts/{account}/deposits", json={"amount": 5}).headers["X-Position"]
    live = q.get(f"{url}/{month}", params={"after": after}).json()
    if datetime.now(UTC).strftime("%Y-%m") == month:  # (unless the month has just turned)
        assert (live["deposits"], live["closing_balance"]) == (1255, 955)

    generation = Generations(client, statements.NAME)
    current = generation.current()
    assert current is not None and generation.info(current).state == "live"
    assert "first build" in generation.info(current).reason or "missing" in generation.info(current).reason
    # The views that were serving were not touched.
    assert accounts_view.current() == accounts_before
    assert accounts_before is not None and accounts_view.info(accounts_before).state == "live"
    assert any(v["name"] == statements.NAME and v["state"] == "live" for v in q.get("/views").json()["items"])
