"""ViewWriter on the real Redis, beyond the store contract (test_view_store_contract.py): Lua's numbers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import orjson
import pytest
import redis.asyncio as redis

from producers.domain.account.decider import MAX_AMOUNT
from stream_processors.store import ProjectedEvent
from stream_processors.view_writer import ViewWriter
from stream_processors.views.accounts import project
from tests.conftest import Stack

pytestmark = pytest.mark.integration


def test_balance_and_balance_after_agree_at_the_domains_limits(stack: Stack, unique: str) -> None:
    """The domain keeps |balance| <= 2^53-1, where Lua's doubles are still exact: the summary's
    balance (HINCRBY) and the entry's balance_after (formatted in Lua) never disagree. Past the
    limit they did (-4611686018427387905 against -4611686018427387904)."""

    async def scenario() -> None:
        client = redis.Redis.from_url(stack.redis_url)
        writer = ViewWriter(client, f"test{unique}", 1)
        base = {"aggregate_id": "a", "occurred_at": datetime.now(UTC)}
        events = [
            (
                "AccountOpened",
                {"version": 1, "owner_id": "o", "currency": "EUR", "overdraft_limit": MAX_AMOUNT},
            ),
            ("MoneyWithdrawn", {"version": 2, "amount": MAX_AMOUNT, "reference": None}),
            ("MoneyDeposited", {"version": 3, "amount": MAX_AMOUNT, "reference": None, "channel": "x"}),
            ("MoneyDeposited", {"version": 4, "amount": MAX_AMOUNT, "reference": None, "channel": "x"}),
        ]
        batch = [
            ProjectedEvent(0, offset, project(name, {**base, **payload}), "a", payload["version"])
            for offset, (name, payload) in enumerate(events)
        ]
        await writer.apply(batch)
        prefix = f"view:test{unique}:g1:"
        balance = int(await client.hget(f"{prefix}account:a", "balance"))  # type: ignore[arg-type]
        entries = [orjson.loads(e) for e in await client.zrange(f"{prefix}account:a:transactions", 0, -1)]
        assert [e["balance_after"] for e in entries] == [-MAX_AMOUNT, 0, MAX_AMOUNT]
        assert balance == entries[-1]["balance_after"] == MAX_AMOUNT
        await client.aclose()

    asyncio.run(scenario())
