"""ViewReader against the real Redis: the merged change logs that live updates resume from."""

from __future__ import annotations

import asyncio

import orjson
import pytest
import redis.asyncio as redis

from query_api.views import ViewReader
from tests.conftest import Stack

pytestmark = pytest.mark.integration


def test_changes_merge_both_logs_in_version_order_without_skipping_past_a_full_page(
    stack: Stack, unique: str
) -> None:
    async def scenario() -> None:
        client = redis.Redis.from_url(stack.redis_url)
        await client.set("view:accounts:current", 1, nx=True)
        prefix = f"view:accounts:g{int(await client.get('view:accounts:current'))}:account:{unique}"  # type: ignore[arg-type]
        money = {v: {"version": v, "type": "deposit", "amount": 1, "balance_after": v} for v in range(2, 9)}
        money.pop(5)
        await client.zadd(f"{prefix}:transactions", {orjson.dumps(e): v for v, e in money.items()})
        others = {1: "opened", 5: "overdraft_limit_changed", 9: "closed"}
        await client.zadd(
            f"{prefix}:changes", {orjson.dumps({"version": v, "type": t}): v for v, t in others.items()}
        )
        reader = ViewReader(client)

        everything = await reader.changes(unique, 0)
        assert [c["version"] for c in everything] == list(range(1, 10))
        assert [c["type"] for c in everything if c["type"] != "deposit"] == [*others.values()]

        # A page of 3 from each log: transactions 2,3,4 and changes 1,5,9. Versions 6..8 are
        # behind the transactions page, so the merged page must stop at 4, not jump to 5 and 9.
        page = await reader.changes(unique, 0, limit=3)
        assert [c["version"] for c in page] == [1, 2, 3, 4]
        rest = await reader.changes(unique, 4, limit=3)
        assert [c["version"] for c in rest] == [5, 6, 7, 8]  # the transactions page ends at 8
        assert [c["version"] for c in await reader.changes(unique, 8, limit=3)] == [9]
        await client.delete(f"{prefix}:transactions", f"{prefix}:changes")  # not in the log: leave no trace
        await client.aclose()

    asyncio.run(scenario())
