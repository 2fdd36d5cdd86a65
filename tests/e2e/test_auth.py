"""Who may do what, on the real stack: every route but the open ones needs a token, scopes are
enforced, a customer is confined to its own accounts by the command side's single writer (403)
and by the query side (404 / 403), and the actor of a command is recorded in its event."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition

from auth.tokens import ACCOUNTS_READ, ACCOUNTS_WRITE, OPERATOR, TRANSFERS_WRITE
from schemas.codec import SingleObjectCodec
from schemas.kafka_security import kafka_config
from tests.conftest import Stack
from tests.e2e.conftest import Services
from tests.e2e.test_slice import read_until
from tests.support.tokens import bearer

pytestmark = pytest.mark.e2e

CUSTOMER_SCOPES = (ACCOUNTS_READ, ACCOUNTS_WRITE, TRANSFERS_WRITE)
OPEN_PATHS = {"/healthz", "/readyz", "/schemas", "/schemas/{fingerprint}"}


def customer(owner: str) -> dict[str, str]:
    return bearer(f"user-{owner}", CUSTOMER_SCOPES, owner=owner)


def event_at(stack: Stack, position: str) -> dict[str, Any]:
    """The event a command's X-Position names, read from events.account as any consumer would."""
    partition, offset = (int(p) for p in position.split("-"))
    consumer = Consumer(
        {
            **kafka_config(stack.kafka_bootstrap_servers),
            "group.id": f"auth-{uuid.uuid4()}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.assign([TopicPartition("events.account", partition, offset)])
        for _ in range(100):
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error():
                record: dict[str, Any] = SingleObjectCodec().decode(msg.value() or b"").record
                return record
        raise AssertionError(f"no event at {position}")
    finally:
        consumer.close()


@pytest.mark.parametrize("api", ["commands", "queries"])
def test_every_protected_operation_answers_401_without_a_token(running: Services, api: str) -> None:
    client: httpx.Client = getattr(running, api)
    document = client.get("/openapi.json").json()
    checked = 0
    for template, operations in document["paths"].items():
        url = template.replace("{", "").replace("}", "")  # any id: auth comes before lookups
        for method in operations:
            response = httpx.request(method, str(client.base_url) + url, timeout=5)
            if template in OPEN_PATHS:
                assert response.status_code != 401, (method, template)
                continue
            assert response.status_code == 401, (method, template, response.text)
            assert response.json()["error"] == "unauthorized"
            assert response.headers["www-authenticate"].startswith("Bearer")
            checked += 1
    assert checked >= (6 if api == "commands" else 9)


def test_scopes_are_enforced_and_operator_is_needed_for_views_and_metrics(running: Services) -> None:
    c, q = running.commands, running.queries
    reader = bearer("auditor", (ACCOUNTS_READ,))
    opened = c.post("/accounts", json={"owner_id": "o", "currency": "EUR"}, headers=reader)
    assert (opened.status_code, opened.json()["error"]) == (403, "forbidden")
    assert "accounts:write" in opened.json()["detail"]
    transfer = {"from_account_id": "a", "to_account_id": "b", "amount": 1}
    assert c.post("/transfers", json=transfer, headers=bearer("t", (ACCOUNTS_WRITE,))).status_code == 403
    for path in ("/views", "/metrics"):
        assert q.get(path, headers=reader).status_code == 403
        assert q.get(path, headers=bearer("ops", (OPERATOR,))).status_code == 200
    expired = q.get("/accounts/x", headers={"authorization": "Bearer not-a-jwt"})
    assert expired.status_code == 401 and "not-a-jwt" not in expired.text


def test_a_customer_acts_and_reads_only_on_its_own_accounts_and_the_actor_is_recorded(
    running: Services, stack: Stack, unique: str
) -> None:
    c, q = running.commands, running.queries
    alice, bob = customer(f"alice-{unique}"), customer(f"bob-{unique}")
    # A customer opens accounts for itself only, and without an overdraft.
    refused = c.post("/accounts", json={"owner_id": f"bob-{unique}", "currency": "EUR"}, headers=alice)
    assert (refused.status_code, refused.json()["error"]) == (403, "not_owner")
    overdraft = {"owner_id": f"alice-{unique}", "currency": "EUR", "overdraft_limit": 100}
    assert c.post("/accounts", json=overdraft, headers=alice).json()["error"] == "staff_only"
    mine = c.post("/accounts", json={"owner_id": f"alice-{unique}", "currency": "EUR"}, headers=alice).json()
    bobs = c.post("/accounts", json={"owner_id": f"bob-{unique}", "currency": "EUR"}, headers=bob).json()
    deposit = c.post(f"/accounts/{bobs['account_id']}/deposits", json={"amount": 500}, headers=bob)
    assert deposit.status_code == 200

    # The command side: alice may not touch bob's account (the single writer decides: not_owner).
    theft = c.post(f"/accounts/{bobs['account_id']}/withdrawals", json={"amount": 100}, headers=alice)
    assert (theft.status_code, theft.json()["error"]) == (403, "not_owner")
    # ... while money may be paid into anyone's account by a transfer, and staff may act on any.
    assert c.post(f"/accounts/{mine['account_id']}/deposits", json={"amount": 7}).status_code == 200

    # The query side: bob's account is as if missing for alice; its owner list is forbidden.
    read_until(
        q, f"/accounts/{bobs['account_id']}", lambda r: r.status_code == 200 and r.json()["version"] == 2
    )
    assert q.get(f"/accounts/{bobs['account_id']}", headers=alice).status_code == 404
    assert q.get(f"/accounts/{bobs['account_id']}/transactions", headers=alice).status_code == 404
    assert q.get(f"/owners/bob-{unique}/accounts", headers=alice).status_code == 403
    assert q.get(f"/accounts/{bobs['account_id']}", headers=bob).json()["balance"] == 500
    own = q.get(f"/owners/alice-{unique}/accounts", headers=alice, params={"after": mine["position"]})
    assert [a["account_id"] for a in own.json()["items"]] == [mine["account_id"]]

    # A transfer out of bob's account requested by alice fails not_owner; nothing moves.
    asked = c.post(
        "/transfers",
        json={"from_account_id": bobs["account_id"], "to_account_id": mine["account_id"], "amount": 100},
        headers=alice,
    ).json()
    done = read_until(
        q,
        f"/transfers/{asked['transfer_id']}",
        lambda r: r.status_code == 200 and r.json()["status"] in ("completed", "failed"),
        within_s=60,
    ).json()
    assert (done["status"], done["reason"], done["requested_by"]) == (
        "failed",
        "not_owner",
        f"user-alice-{unique}",
    )
    assert q.get(f"/transfers/{asked['transfer_id']}", headers=alice).status_code == 200  # she asked
    assert q.get(f"/accounts/{bobs['account_id']}", headers=bob).json()["balance"] == 500

    # The audit trail: each event names who caused it, as the contract's fields.
    opened_event = event_at(stack, mine["position"])
    assert (opened_event["event_type"], opened_event["actor"], opened_event["actor_owner_id"]) == (
        "AccountOpened",
        f"user-alice-{unique}",
        f"alice-{unique}",
    )
    staff_event = event_at(stack, bobs["position"])
    assert staff_event["actor"] == f"user-bob-{unique}"
    deposit_event = event_at(stack, deposit.headers["X-Position"])
    assert (deposit_event["event_type"], deposit_event["actor"]) == ("MoneyDeposited", f"user-bob-{unique}")
