"""A toy view that lives in tests alone: deposits counted (and summed) per account. The registry
takes it from CQRS_EXTRA_MODULES=tests.support.toy_view; no engine file names it."""

from __future__ import annotations

from typing import Any

from stream_processors.ops import HashIncrement, Op
from stream_processors.views.base import ViewSpec

NAME = "deposit_counts"


def deposits_key(account_id: str) -> str:
    return f"deposits:{account_id}"


def project(event_type: str, event: dict[str, Any]) -> list[Op]:
    if event_type != "MoneyDeposited":
        return []
    key = deposits_key(event["aggregate_id"])
    return [HashIncrement(key, "count", 1), HashIncrement(key, "amount", event["amount"])]


VIEW = ViewSpec(NAME, "account", project, queried=False, gates_readiness=False)
