"""The accounts views: summary hash `account:<id>`, transactions `account:<id>:transactions`
(sorted by version, each with the balance after it), the account's other changes
`account:<id>:changes` (opened, limit changed, closed; sorted by version, so the two sorted sets
together hold every version, which live updates resume from), `owner:<owner>:accounts`, and daily
totals per currency `daily:<date>:<currency>`."""

from __future__ import annotations

from typing import Any

import orjson

from stream_processors.projections.base import UnknownEventType, iso
from stream_processors.projections.ops import HashSet, MoneyMoved, Op, SetAdd, SortedSetAdd

VIEW = "accounts"


def account_key(account_id: str) -> str:
    return f"account:{account_id}"


def transactions_key(account_id: str) -> str:
    return f"account:{account_id}:transactions"


def changes_key(account_id: str) -> str:
    return f"account:{account_id}:changes"


def _change(account_id: str, version: int, kind: str, occurred: str, **fields: Any) -> SortedSetAdd:
    entry = {"version": version, "type": kind, "occurred_at": occurred, **fields}
    return SortedSetAdd(changes_key(account_id), version, orjson.dumps(entry).decode())


def owner_key(owner_id: str) -> str:
    return f"owner:{owner_id}:accounts"


DAILY_PREFIX = "daily:"  # + "<YYYY-MM-DD>:<currency>", fields deposits / withdrawals / count

_MONEY = {  # event type -> (sign, transaction type)
    "MoneyDeposited": (1, "deposit"),
    "MoneyWithdrawn": (-1, "withdrawal"),
    "AccountCredited": (1, "transfer_in"),
    "AccountDebited": (-1, "transfer_out"),
}


def project(event_type: str, event: dict[str, Any]) -> list[Op]:
    account_id = event["aggregate_id"]
    key = account_key(account_id)
    occurred = iso(event["occurred_at"])
    stamp = {"version": event["version"], "updated_at": occurred}
    if event_type in _MONEY:
        sign, kind = _MONEY[event_type]
        if event_type == "AccountCredited" and event.get("reversal"):
            kind = "transfer_reversal"
        entry = {
            "version": event["version"],
            "type": kind,
            "amount": event["amount"],
            "occurred_at": occurred,
            "reference": event.get("reference"),
            "transfer_id": event.get("transfer_id"),
        }
        return [
            MoneyMoved(
                key,
                transactions_key(account_id),
                DAILY_PREFIX,
                event["version"],
                sign * event["amount"],
                entry,
                occurred[:10],
                occurred,
            )
        ]
    match event_type:
        case "AccountOpened":
            return [
                HashSet(
                    key,
                    {
                        "account_id": account_id,
                        "owner_id": event["owner_id"],
                        "currency": event["currency"],
                        "balance": 0,
                        "overdraft_limit": event["overdraft_limit"],
                        "status": "open",
                        "opened_at": occurred,
                        **stamp,
                    },
                ),
                SetAdd(owner_key(event["owner_id"]), account_id),
                _change(
                    account_id,
                    event["version"],
                    "opened",
                    occurred,
                    owner_id=event["owner_id"],
                    currency=event["currency"],
                    overdraft_limit=event["overdraft_limit"],
                ),
            ]
        case "OverdraftLimitChanged":
            limit = event["overdraft_limit"]
            return [
                HashSet(key, {"overdraft_limit": limit, **stamp}),
                _change(
                    account_id, event["version"], "overdraft_limit_changed", occurred, overdraft_limit=limit
                ),
            ]
        case "AccountClosed":
            return [
                HashSet(key, {"status": "closed", **stamp}),
                _change(account_id, event["version"], "closed", occurred),
            ]
    raise UnknownEventType(f"the {VIEW} view has no rule for {event_type!r}")
