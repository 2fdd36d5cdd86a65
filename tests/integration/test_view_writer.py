"""The exactly-once effect of ViewWriter against the real Redis."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as redis

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
