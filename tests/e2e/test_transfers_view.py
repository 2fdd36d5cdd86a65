"""The transfers view on the real pipeline: transfer events in events.transfer (appended here as the
transfer process manager would) -> the transfers projector -> GET /transfers/{id}."""

from __future__ import annotations

import pytest

from schemas.keys import partition_for
from tests.conftest import Stack
from tests.e2e.conftest import Services
from tests.e2e.test_slice import read_until
from tests.support.kafka import Aggregate
from tests.support.projection import EventLog, last_offsets

pytestmark = pytest.mark.e2e


def test_requested_then_completed_or_failed_transfers(running: Services, stack: Stack, unique: str) -> None:
    transfers = Aggregate("transfer", stack.kafka_bootstrap_servers, 12)
    log = EventLog(transfers, aggregate_type="transfer")
    ok, refused = f"ok-{unique}", f"refused-{unique}"
    log.append(
        [
            ("TransferRequested", ok, {"from_account_id": "a", "to_account_id": "b", "amount": 250}),
            ("TransferRequested", refused, {"from_account_id": "a", "to_account_id": "c", "amount": 9}),
            ("TransferCompleted", ok, {}),
            ("TransferFailed", refused, {"reason": "insufficient_funds", "detail": "a cannot pay 9"}),
        ]
    )
    q = running.queries
    done = read_until(q, f"/transfers/{ok}", lambda r: r.status_code == 200 and r.json()["version"] == 2)
    body = done.json()
    assert {k: body[k] for k in ("from_account_id", "to_account_id", "amount", "status")} == {
        "from_account_id": "a",
        "to_account_id": "b",
        "amount": 250,
        "status": "completed",
    }
    assert "reason" not in body and done.headers["etag"] == '"2"'
    assert q.get(f"/transfers/{ok}", headers={"If-None-Match": '"2"'}).status_code == 304

    # Read-your-writes on the transfers' own log: its position is immediately visible.
    partition = partition_for(refused, 12)
    position = f"{partition}-{last_offsets(transfers)[partition]}"
    failed = q.get(f"/transfers/{refused}", params={"after": position}).json()
    assert (failed["status"], failed["reason"]) == ("failed", "insufficient_funds")

    assert q.get(f"/transfers/nobody-{unique}").json()["error"] == "transfer_not_found"
