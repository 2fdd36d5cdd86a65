"""The account summary view: one hash per account under `account:<id>`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from stream_processors.projections.ops import HashIncrement, HashSet, Op

VIEW = "accounts"


class UnknownEventType(ValueError):
    """This projection has no rule for the event; it goes to the dead letters."""


def account_key(account_id: str) -> str:
    return f"account:{account_id}"


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def project(event_type: str, event: dict[str, Any]) -> list[Op]:
    key = account_key(event["aggregate_id"])
    stamp = {"version": event["version"], "updated_at": _iso(event["occurred_at"])}
    match event_type:
        case "AccountOpened":
            return [
                HashSet(
                    key,
                    {
                        "account_id": event["aggregate_id"],
                        "owner_id": event["owner_id"],
                        "currency": event["currency"],
                        "balance": 0,
                        "overdraft_limit": event["overdraft_limit"],
                        "status": "open",
                        "opened_at": _iso(event["occurred_at"]),
                        **stamp,
                    },
                )
            ]
        case "MoneyDeposited" | "AccountCredited":
            return [HashIncrement(key, "balance", event["amount"]), HashSet(key, stamp)]
        case "MoneyWithdrawn" | "AccountDebited":
            return [HashIncrement(key, "balance", -event["amount"]), HashSet(key, stamp)]
        case "OverdraftLimitChanged":
            return [HashSet(key, {"overdraft_limit": event["overdraft_limit"], **stamp})]
        case "AccountClosed":
            return [HashSet(key, {"status": "closed", **stamp})]
    raise UnknownEventType(f"the {VIEW} view has no rule for {event_type!r}")
