"""The transfers view, from events.transfer: one hash per transfer with its accounts, amount and
status (requested -> debited -> completed, or -> failed with the reason, through reversing when the
target refused after the source was debited)."""

from __future__ import annotations

from typing import Any

from stream_processors import layout
from stream_processors.ops import HashSet, Op
from stream_processors.store import ViewReads
from stream_processors.views.base import UnknownEventType, ViewSpec, iso, typed

NAME = "transfers"


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
            # Who asked (TransferRequested v2 on): audit, and which customer may read it.
            for field, name in (("requested_by", "actor"), ("requested_by_owner", "actor_owner_id")):
                if event.get(name):
                    fields[field] = event[name]
            return [HashSet(layout.transfer(transfer_id), fields)]
        case "TransferDebited":
            return [HashSet(layout.transfer(transfer_id), {"status": "debited", **stamp})]
        case "TransferCompleted":
            return [HashSet(layout.transfer(transfer_id), {"status": "completed", **stamp})]
        case "TransferReversing" | "TransferFailed":
            status = "reversing" if event_type == "TransferReversing" else "failed"
            ended: dict[str, str | int] = {
                "status": status,
                "reason": event["reason"],
                "detail": event["detail"],
                **stamp,
            }
            return [HashSet(layout.transfer(transfer_id), ended)]
    raise UnknownEventType(f"the {NAME} view has no rule for {event_type!r}")


async def transfer(reads: ViewReads, transfer_id: str) -> dict[str, Any] | None:
    row = await reads.row(NAME, layout.transfer(transfer_id))
    return None if row is None else typed(row, ("amount", "version"))


VIEW = ViewSpec(NAME, "transfer", project)
