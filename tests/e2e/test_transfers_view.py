"""Transfers end to end through the front door: POST /transfers -> the transfer aggregate -> the
transfer process -> the accounts -> the transfers view on GET /transfers/{id}, and the account's
transactions show the transfer."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Services
from tests.e2e.test_slice import read_until

pytestmark = pytest.mark.e2e


def account(c: httpx.Client, unique: str, balance: int, currency: str = "EUR") -> str:
    account_id: str = c.post("/accounts", json={"owner_id": f"tv-{unique}", "currency": currency}).json()[
        "account_id"
    ]
    if balance:
        assert c.post(f"/accounts/{account_id}/deposits", json={"amount": balance}).status_code == 200
    return account_id


def finished(q: httpx.Client, transfer: dict[str, Any]) -> httpx.Response:
    return read_until(
        q,
        f"/transfers/{transfer['transfer_id']}",
        lambda r: r.status_code == 200 and r.json()["status"] in ("completed", "failed"),
        within_s=60,
    )


def test_a_transfer_completes_and_one_without_funds_fails_with_the_reason(
    running: Services, unique: str
) -> None:
    c, q = running.commands, running.queries
    source, target = account(c, unique, 1000), account(c, unique, 0)
    requested = c.post("/transfers", json={"from_account_id": source, "to_account_id": target, "amount": 250})
    assert requested.status_code == 202, requested.text
    ok = requested.json()
    seen = q.get(f"/transfers/{ok['transfer_id']}", params={"after": ok["position"]}).json()
    assert seen["status"] in ("requested", "debited", "completed")  # read-your-writes on the transfer's log
    done = finished(q, ok)
    body = done.json()
    assert {k: body[k] for k in ("from_account_id", "to_account_id", "amount", "status")} == {
        "from_account_id": source, "to_account_id": target, "amount": 250, "status": "completed"
    }  # fmt: skip
    assert "reason" not in body
    etag = done.headers["etag"]
    assert q.get(f"/transfers/{ok['transfer_id']}", headers={"If-None-Match": etag}).status_code == 304

    for account_id, balance in ((source, 750), (target, 250)):
        view = read_until(q, f"/accounts/{account_id}", lambda r, b=balance: r.json().get("balance") == b)
        assert view.json()["balance"] == balance
    items = q.get(f"/accounts/{source}/transactions").json()["items"]
    assert [(i["type"], i.get("transfer_id")) for i in items][-1] == ("transfer_out", ok["transfer_id"])

    refused = c.post(
        "/transfers", json={"from_account_id": target, "to_account_id": source, "amount": 9_999}
    ).json()
    failed = finished(q, refused).json()
    assert (failed["status"], failed["reason"]) == ("failed", "insufficient_funds")

    same = c.post("/transfers", json={"from_account_id": source, "to_account_id": source, "amount": 1})
    assert (same.status_code, same.json()["error"]) == (409, "same_account")
    assert q.get(f"/transfers/nobody-{unique}").json()["error"] == "transfer_not_found"
