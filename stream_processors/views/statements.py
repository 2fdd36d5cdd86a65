"""The statements view, from events.account: a monthly statement per account (calendar months of
the events' time, UTC): opening balance, deposits, withdrawals, transfers in and out (a transfer's
reversal counts as money in), closing balance.

Stored per account: its currency and opening month, each month's totals, and each month's net
movement in one hash, so a month's opening balance is the sum of the earlier months' nets (one
read, a few fields per year of history) and no projection needs the balance before an event."""

from __future__ import annotations

from typing import Any

from stream_processors import layout
from stream_processors.ops import Hash, HashIncrement, HashSet, Op
from stream_processors.store import ViewReads
from stream_processors.views.base import UnknownEventType, ViewSpec, iso

NAME = "statements"
FIGURES = ("deposits", "withdrawals", "transfers_in", "transfers_out")
_MONEY = {  # event type -> (figure, sign)
    "MoneyDeposited": ("deposits", 1),
    "MoneyWithdrawn": ("withdrawals", -1),
    "AccountCredited": ("transfers_in", 1),
    "AccountDebited": ("transfers_out", -1),
}
_NO_MONEY = {"OverdraftLimitChanged", "AccountClosed"}


def project(event_type: str, event: dict[str, Any]) -> list[Op]:
    account_id = event["aggregate_id"]
    month = iso(event["occurred_at"])[:7]
    if event_type in _MONEY:
        figure, sign = _MONEY[event_type]
        return [
            HashIncrement(layout.statement_month(account_id, month), figure, event["amount"]),
            HashIncrement(layout.statement_net(account_id), month, sign * event["amount"]),
        ]
    if event_type == "AccountOpened":
        fields: dict[str, str | int] = {
            "account_id": account_id,
            "currency": event["currency"],
            "opened": month,
        }
        return [HashSet(layout.statement_account(account_id), fields)]
    if event_type in _NO_MONEY:
        return []
    raise UnknownEventType(f"the {NAME} view has no rule for {event_type!r}")


async def statement(reads: ViewReads, account_id: str, month: str) -> dict[str, Any] | None:
    """The statement of a month (YYYY-MM) from the account's opening month on; None before it, or
    when there is no such account. The current month's is the statement so far."""
    account, nets, totals = await reads.read(
        NAME,
        Hash(layout.statement_account(account_id)),
        Hash(layout.statement_net(account_id)),
        Hash(layout.statement_month(account_id, month)),
    )
    if not account or month < account["opened"]:
        return None
    opening = sum(int(net) for earlier, net in nets.items() if earlier < month)
    return {
        "account_id": account_id,
        "month": month,
        "currency": account["currency"],
        "opening_balance": opening,
        **{figure: int(totals.get(figure, 0)) for figure in FIGURES},
        "closing_balance": opening + int(nets.get(month, 0)),
    }


VIEW = ViewSpec(NAME, "account", project, gates_readiness=False)
