"""The HTTP command API over the real pipeline: every account command, If-Match, Idempotency-Key."""

from __future__ import annotations

import pytest

from tests.conftest import Stack
from tests.e2e.conftest import Services
from tests.support.kafka import read_topic

pytestmark = pytest.mark.e2e


def open_account(running: Services, **body: object) -> str:
    response = running.commands.post("/accounts", json={"owner_id": "o", "currency": "EUR", **body})
    assert response.status_code == 201, response.text
    account_id: str = response.json()["account_id"]
    return account_id


def test_every_account_command_and_its_refusals(running: Services) -> None:
    c = running.commands
    account = open_account(running, overdraft_limit=100)
    assert c.post(f"/accounts/{account}/deposits", json={"amount": 500}).json()["version"] == 2
    assert c.post(f"/accounts/{account}/withdrawals", json={"amount": 600}).json()["version"] == 3  # -100

    refused = c.post(f"/accounts/{account}/withdrawals", json={"amount": 1})
    assert (refused.status_code, refused.json()["error"]) == (409, "insufficient_funds")
    refused = c.patch(f"/accounts/{account}", json={"overdraft_limit": 50})
    assert (refused.status_code, refused.json()["error"]) == (409, "insufficient_funds")
    refused = c.delete(f"/accounts/{account}")
    assert (refused.status_code, refused.json()["error"]) == (409, "balance_not_zero")

    assert c.patch(f"/accounts/{account}", json={"overdraft_limit": 200}).json()["version"] == 4
    assert c.post(f"/accounts/{account}/deposits", json={"amount": 100}).json()["version"] == 5
    closed = c.delete(f"/accounts/{account}")
    assert (closed.status_code, closed.json()["version"]) == (200, 6)
    refused = c.post(f"/accounts/{account}/deposits", json={"amount": 1})
    assert (refused.status_code, refused.json()["error"]) == (409, "account_closed")
    assert c.delete("/accounts/nobody-here").status_code == 404


def test_a_stale_if_match_gets_412_with_the_current_version(running: Services) -> None:
    c = running.commands
    account = open_account(running)
    c.post(f"/accounts/{account}/deposits", json={"amount": 5})
    stale = c.post(f"/accounts/{account}/deposits", json={"amount": 5}, headers={"If-Match": '"1"'})
    assert stale.status_code == 412
    assert stale.json() | {"detail": ""} == {"error": "version_mismatch", "detail": "", "current_version": 2}
    fresh = c.post(f"/accounts/{account}/deposits", json={"amount": 5}, headers={"If-Match": '"2"'})
    assert (fresh.status_code, fresh.json()["version"], fresh.headers["ETag"]) == (200, 3, '"3"')
    bad = c.post(f"/accounts/{account}/deposits", json={"amount": 5}, headers={"If-Match": "three"})
    assert bad.status_code == 422 and bad.json()["fields"][0]["field"] == "If-Match"


def test_an_idempotency_key_gives_one_effect_and_the_same_answer_across_a_restart(
    stack: Stack, running: Services, unique: str
) -> None:
    c = running.commands
    account = open_account(running)
    key = {"Idempotency-Key": f"pay-{unique}"}
    first = c.post(f"/accounts/{account}/deposits", json={"amount": 700}, headers=key)
    second = c.post(f"/accounts/{account}/deposits", json={"amount": 700}, headers=key)
    running.restart("command-processor-account")  # the answer must come back from what Kafka kept
    third = c.post(f"/accounts/{account}/deposits", json={"amount": 700}, headers=key)
    assert [r.status_code for r in (first, second, third)] == [200, 200, 200]
    assert first.json() == second.json() == third.json()

    reused = c.post(f"/accounts/{account}/deposits", json={"amount": 701}, headers=key)
    assert (reused.status_code, reused.json()["error"]) == (422, "idempotency_key_reused")

    deposits = [
        e
        for *_, e in read_topic(stack.kafka_bootstrap_servers, "events.account")
        if e["aggregate_id"] == account and e["event_type"] == "MoneyDeposited"
    ]
    assert [e["amount"] for e in deposits] == [700]


def test_opening_with_an_idempotency_key_opens_one_account(running: Services, unique: str) -> None:
    key = {"Idempotency-Key": f"open-{unique}"}
    body = {"owner_id": "o", "currency": "EUR"}
    first = running.commands.post("/accounts", json=body, headers=key)
    again = running.commands.post("/accounts", json=body, headers=key)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    other = running.commands.post("/accounts", json={**body, "currency": "USD"}, headers=key)
    assert other.status_code == 422
