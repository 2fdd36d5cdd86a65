"""The accounts view, from events.account: the summary of each account, its transactions (sorted
by version, each with the balance after it), its other changes (opened, limit changed, closed;
sorted by version, so the two sorted sets together hold every version, which live updates resume
from), the accounts of each owner, and daily totals per currency. Keys: stream_processors/layout.py."""

from __future__ import annotations

from typing import Any

import orjson

from stream_processors import layout
from stream_processors.ops import (
    Exists,
    Hash,
    HashSet,
    Members,
    MoneyMoved,
    Op,
    ScoreAfter,
    SetAdd,
    SortedSetAdd,
)
from stream_processors.store import ViewReads
from stream_processors.views.base import UnknownEventType, ViewSpec, iso, typed

NAME = "accounts"


def _change(account_id: str, version: int, kind: str, occurred: str, **fields: Any) -> SortedSetAdd:
    entry = {"version": version, "type": kind, "occurred_at": occurred, **fields}
    return SortedSetAdd(layout.account_changes(account_id), version, orjson.dumps(entry).decode())


_MONEY = {  # event type -> (sign, transaction type)
    "MoneyDeposited": (1, "deposit"),
    "MoneyWithdrawn": (-1, "withdrawal"),
    "AccountCredited": (1, "transfer_in"),
    "AccountDebited": (-1, "transfer_out"),
}


def project(event_type: str, event: dict[str, Any]) -> list[Op]:
    account_id = event["aggregate_id"]
    key = layout.account(account_id)
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
                layout.transactions(account_id),
                layout.daily_prefix(occurred[:10]),
                event["version"],
                sign * event["amount"],
                entry,
                occurred,
                daily=kind in ("deposit", "withdrawal"),
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
                SetAdd(layout.owner_accounts(event["owner_id"]), account_id),
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
    raise UnknownEventType(f"the {NAME} view has no rule for {event_type!r}")


# --- queries --------------------------------------------------------------------------------------

_INT_FIELDS = ("balance", "overdraft_limit", "version")


async def account(reads: ViewReads, account_id: str) -> dict[str, Any] | None:
    """The summary (one round trip: the hot read)."""
    row = await reads.row(NAME, layout.account(account_id))
    return None if row is None else typed(row, _INT_FIELDS)


async def transactions(
    reads: ViewReads, account_id: str, after_version: int, limit: int
) -> list[dict[str, Any]] | None:
    """Entries oldest first with versions above `after_version`; None when no such account.
    Paging by version keeps pages stable while new transactions are appended."""
    exists, members = await reads.read(
        NAME,
        Exists(layout.account(account_id)),
        ScoreAfter(layout.transactions(account_id), after_version, limit),
    )
    if not exists:
        return None
    return [_entry(orjson.loads(m)) for m in members]


async def changes(
    reads: ViewReads, account_id: str, after_version: int, limit: int = 500
) -> list[dict[str, Any]]:
    """Every change of the account with a version above `after_version`, in version order and
    without gaps: money movements from the transactions, the others from the change log."""
    pages = await reads.read(
        NAME,
        ScoreAfter(layout.transactions(account_id), after_version, limit),
        ScoreAfter(layout.account_changes(account_id), after_version, limit),
    )
    logs = [[orjson.loads(m) for m in members] for members in pages]
    # A full page may continue past its last version: stop there, or another log's later
    # entries would skip the versions the next read brings.
    cap = min((entries[-1]["version"] for entries in logs if len(entries) == limit), default=None)
    merged = sorted((_entry(e) for entries in logs for e in entries), key=lambda e: int(e["version"]))
    return [e for e in merged if cap is None or e["version"] <= cap]


async def owner_accounts(reads: ViewReads, owner_id: str) -> list[dict[str, Any]]:
    (ids,) = await reads.read(NAME, Members(layout.owner_accounts(owner_id)))
    if not ids:
        return []
    rows = await reads.read(NAME, *(Hash(layout.account(account_id)) for account_id in sorted(ids)))
    return [typed(row, _INT_FIELDS) for row in rows if row]


async def daily(reads: ViewReads, day: str, currency: str) -> dict[str, int]:
    (totals,) = await reads.read(NAME, Hash(layout.daily(day, currency)))
    return {name: int(totals.get(name, 0)) for name in ("deposits", "withdrawals", "count")}


def _entry(item: dict[str, Any]) -> dict[str, Any]:
    """Optional fields appear only when set, as the HTTP contract says."""
    return {k: v for k, v in item.items() if v is not None or k not in ("reference", "transfer_id")}


VIEW = ViewSpec(NAME, "account", project)
