"""The exactly-once effect of ViewWriter against the real Redis."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import orjson
import pytest
import redis.asyncio as redis

from producers.domain.account import MAX_AMOUNT
from stream_processors.projections.accounts import project
from stream_processors.projections.ops import HashIncrement, HashSet
from stream_processors.view_writer import ProjectedEvent, ViewWriter
from tests.conftest import Stack

pytestmark = pytest.mark.integration


def deposit(partition: int, offset: int, amount: int) -> ProjectedEvent:
    return ProjectedEvent(
        partition,
        offset,
        [HashIncrement("account:a", "balance", amount), HashSet("account:a", {"version": offset})],
    )


def test_a_redelivered_batch_changes_nothing(stack: Stack, unique: str) -> None:
    async def scenario() -> None:
        client = redis.Redis.from_url(stack.redis_url)
        writer = ViewWriter(client, f"test{unique}", 1)
        batch = [deposit(0, 1, 10), deposit(0, 2, 20), deposit(3, 7, 5)]
        assert len(await writer.apply(batch)) == 3
        assert await writer.apply(batch) == []  # at-least-once delivery, exactly-once effect
        assert [e.offset for e in await writer.apply([deposit(0, 2, 20), deposit(0, 3, 1)])] == [3]
        key = f"view:test{unique}:g1:account:a"
        assert int(await client.hget(key, "balance")) == 36  # type: ignore[arg-type]
        checkpoints = await client.hgetall(f"view:test{unique}:g1:checkpoints")
        assert checkpoints == {b"0": b"3", b"3": b"7"}
        await client.aclose()

    asyncio.run(scenario())


def test_concurrent_writers_of_one_partition_apply_each_event_once(stack: Stack, unique: str) -> None:
    async def scenario() -> None:
        clients = [redis.Redis.from_url(stack.redis_url) for _ in range(4)]
        writers = [ViewWriter(c, f"test{unique}", 1) for c in clients]
        events = [deposit(0, offset, 1) for offset in range(1, 201)]

        async def replay(writer: ViewWriter) -> None:
            for start in range(0, 200, 5):  # overlapping batches, in log order
                await writer.apply(events[start : start + 10])

        # Four writers that each believe they own the partition (as during a rebalance).
        await asyncio.gather(*(replay(w) for w in writers))
        balance = await clients[0].hget(f"view:test{unique}:g1:account:a", "balance")
        assert int(balance) == 200  # type: ignore[arg-type]
        for c in clients:
            await c.aclose()

    asyncio.run(scenario())


def test_the_accounts_views_from_a_history(stack: Stack, unique: str) -> None:
    """Summary, transactions with running balance, owner index and daily totals, from events."""
    from datetime import UTC, datetime

    import orjson

    from stream_processors.projections.accounts import project

    at = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    history = [
        ("AccountOpened", {"owner_id": "olga", "currency": "CHF", "overdraft_limit": 50}),
        ("MoneyDeposited", {"amount": 1000, "reference": "salary", "channel": "http"}),
        ("MoneyWithdrawn", {"amount": 1030, "reference": None}),
        (
            "AccountCredited",
            {"amount": 7, "transfer_id": "t1", "counterparty_account_id": "x", "reversal": False},
        ),
    ]
    events = [
        ProjectedEvent(
            0, offset, project(name, {"aggregate_id": "a", "version": offset, "occurred_at": at, **p})
        )
        for offset, (name, p) in enumerate(history, start=1)
    ]

    async def scenario() -> None:
        client = redis.Redis.from_url(stack.redis_url)
        await ViewWriter(client, f"v{unique}", 1).apply(events)
        prefix = f"view:v{unique}:g1:"
        summary = await client.hgetall(f"{prefix}account:a")
        assert (summary[b"balance"], summary[b"version"], summary[b"currency"]) == (b"-23", b"4", b"CHF")
        entries = [orjson.loads(m) for m in await client.zrange(f"{prefix}account:a:transactions", 0, -1)]
        assert [(e["version"], e["type"], e["amount"], e["balance_after"]) for e in entries] == [
            (2, "deposit", 1000, 1000),
            (3, "withdrawal", 1030, -30),
            (4, "transfer_in", 7, -23),
        ]
        assert entries[0]["reference"] == "salary" and entries[2]["transfer_id"] == "t1"
        assert await client.smembers(f"{prefix}owner:olga:accounts") == {b"a"}
        daily = await client.hgetall(f"{prefix}daily:2026-03-04:CHF")
        assert daily == {b"deposits": b"1000", b"withdrawals": b"1030", b"count": b"2"}  # transfers apart
        await client.aclose()

    asyncio.run(scenario())


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
