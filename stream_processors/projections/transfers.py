"""The transfers view: one hash `transfer:<id>` per transfer with its accounts, amount and status
(requested -> completed | failed, with the reason of a failure)."""

from __future__ import annotations

from typing import Any

from stream_processors.projections.base import UnknownEventType, iso
from stream_processors.projections.ops import HashSet, Op

VIEW = "transfers"
SOURCE = "transfer"  # the aggregate whose events feed this view


def transfer_key(transfer_id: str) -> str:
    return f"transfer:{transfer_id}"


def project(event_type: str, event: dict[str, Any]) -> list[Op]:
    transfer_id = event["aggregate_id"]
    stamp = {"version": event["version"], "updated_at": iso(event["occurred_at"])}
    match event_type:
        case "TransferRequested":
            fields: dict[str, str | int] = {
                "transfer_id": transfer_id,
                "from_account_id": event["from_account_id"],
                "to_account_id": event["to_account_id"],
                "amount": event["amount"],
                "status": "requested",
                "requested_at": stamp["updated_at"],
                **stamp,
            }
            return [HashSet(transfer_key(transfer_id), fields)]
        case "TransferCompleted":
            return [HashSet(transfer_key(transfer_id), {"status": "completed", **stamp})]
        case "TransferFailed":
            failed: dict[str, str | int] = {
                "status": "failed",
                "reason": event["reason"],
                "detail": event["detail"],
                **stamp,
            }
            return [HashSet(transfer_key(transfer_id), failed)]
    raise UnknownEventType(f"the {VIEW} view has no rule for {event_type!r}")
