"""Bulk delivery from the read_committed consumer to the projector: whole fetches in the order
fetched, none dropped, the fetcher held back while fetches wait."""

from __future__ import annotations

import asyncio
from typing import Any, NamedTuple

from faust.types import TP

from schemas.codec import SingleObjectCodec
from stream_processors import layout
from stream_processors.app import Adapters, ProjectorService
from stream_processors.read_committed import FetchedBatches
from stream_processors.settings import ProjectorSettings
from stream_processors.views.registry import view_spec
from tests.support.fake_views import FakeViews, FakeViewStore
from tests.support.projection import event

TOPIC = "events.account"
codec = SingleObjectCodec()


class Record(NamedTuple):  # the fields of an aiokafka ConsumerRecord the projector reads
    offset: int
    value: bytes


def fetch(partition: int, offsets: range) -> dict[TP, list[Any]]:
    return {TP(TOPIC, partition): [Record(o, b"") for o in offsets]}


async def first(batches: FetchedBatches, max_records: int) -> list[Any]:
    async for taken in batches.take(max_records):
        return taken
    raise AssertionError("take ended")


def test_queued_fetches_are_taken_together_up_to_the_batch_size_in_order() -> None:
    async def scenario() -> None:
        batches = FetchedBatches(prefetch=4)
        for start in (0, 10, 20):
            await batches.put(fetch(0, range(start, start + 10)))
        taken = await first(batches, 15)
        assert [r.offset for f in taken for r in f[TP(TOPIC, 0)]] == list(range(20))
        assert [r.offset for f in await first(batches, 15) for r in f[TP(TOPIC, 0)]] == list(range(20, 30))

    asyncio.run(scenario())


def test_a_full_queue_holds_the_fetcher_until_a_fetch_is_taken_and_none_is_dropped() -> None:
    async def scenario() -> None:
        batches = FetchedBatches(prefetch=1)
        await batches.put(fetch(0, range(0, 1)))
        waiting = asyncio.create_task(batches.put(fetch(0, range(1, 2))))
        await asyncio.sleep(0.01)
        assert not waiting.done()
        assert [r.offset for f in await first(batches, 1) for r in f[TP(TOPIC, 0)]] == [0]
        await asyncio.wait_for(waiting, 1)
        assert [r.offset for f in await first(batches, 1) for r in f[TP(TOPIC, 0)]] == [1]

    asyncio.run(scenario())


def test_the_service_applies_whole_fetches_through_the_projector_and_commits_after_each() -> None:
    views = FakeViews()
    store = FakeViewStore(views, "accounts", 1)
    adapters = Adapters(store, SingleObjectCodec(), remove_abandoned=list, restart=list[str]().append)
    projector = ProjectorService(
        ProjectorSettings(projector_generation=1), view_spec("accounts"), 1, adapters
    )
    batches = projector.batches
    assert batches is not None and projector.app.view_offsets.batches is batches  # type: ignore[attr-defined]
    commits: list[dict[int, int]] = []

    async def commit() -> None:
        commits.append(dict(store.known_checkpoints))

    projector.commit = commit  # type: ignore[method-assign]

    def opened(account: str) -> bytes:
        return codec.encode(
            "AccountOpened",
            event("AccountOpened", account, 1, owner_id="o", currency="EUR", overdraft_limit=0),
        )

    async def scenario() -> None:
        running = asyncio.create_task(projector.project_fetched())
        await batches.put(
            {
                TP(TOPIC, 0): [Record(0, opened("a")), Record(2, opened("b"))],
                TP(TOPIC, 3): [Record(7, opened("c"))],
            }
        )
        for _ in range(100):
            if commits:
                break
            await asyncio.sleep(0.01)
        running.cancel()

    asyncio.run(scenario())
    assert commits == [{0: 2, 3: 7}]
    assert views.hashes[layout.checkpoints("accounts", 1)] == {"0": "2", "3": "7"}
    assert projector.projector.counters.applied == 3
