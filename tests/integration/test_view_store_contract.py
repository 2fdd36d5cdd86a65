"""The view store's contract, run over the in-memory fake and the real Redis adapters alike: a batch
is applied with its checkpoints atomically, events at or below a checkpoint are skipped, and the
views' queries read back what the projections wrote."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
import redis.asyncio as aredis

from query_api.views import ViewReader
from stream_processors import layout
from stream_processors.ops import HashIncrement, HashSet
from stream_processors.store import ProjectedEvent, ViewNotReady, ViewReads, ViewRebuilding, ViewStore
from stream_processors.view_writer import ViewWriter
from stream_processors.views import accounts, statements
from tests.support.fake_views import FakeViewReads, FakeViews, FakeViewStore

REDIS_DB = 8  # a database of its own: these tests write the real view names


@dataclass
class Backend:
    store: Callable[[str, int], ViewStore]  # (view, generation) -> its store
    reads: ViewReads
    set_current: Callable[[str, int, Mapping[str, str]], Awaitable[None]]  # pointer and meta


@asynccontextmanager
async def fake_backend() -> AsyncIterator[Backend]:
    views = FakeViews()

    async def set_current(view: str, generation: int, meta: Mapping[str, str]) -> None:
        views.set_current(view, generation, meta)

    yield Backend(lambda v, g: FakeViewStore(views, v, g), FakeViewReads(views), set_current)


@asynccontextmanager
async def redis_backend(url: str) -> AsyncIterator[Backend]:
    client = aredis.Redis.from_url(url)

    async def set_current(view: str, generation: int, meta: Mapping[str, str]) -> None:
        await client.set(layout.current(view), generation)
        if meta:
            await client.hset(layout.meta(view, generation), mapping=dict(meta))  # type: ignore[arg-type]

    try:
        yield Backend(lambda v, g: ViewWriter(client, v, g), ViewReader(client), set_current)
    finally:
        await client.aclose()


Opener = Callable[[], AbstractAsyncContextManager[Backend]]


@pytest.fixture(params=["fake", pytest.param("redis", marks=pytest.mark.integration)])
def backend(request: pytest.FixtureRequest) -> Opener:
    if request.param == "fake":
        return fake_backend
    stack = request.getfixturevalue("stack")
    url = f"{stack.redis_url.rsplit('/', 1)[0]}/{REDIS_DB}"
    redis.Redis.from_url(url).flushdb()
    return lambda: redis_backend(url)


def run(opener: Opener, scenario: Callable[[Backend], Coroutine[Any, Any, None]]) -> None:
    async def main() -> None:
        async with opener() as b:
            await scenario(b)

    asyncio.run(main())


AT = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


def history(
    account: str, events: list[tuple[str, dict[str, Any]]], view: Any, partition: int = 0, at: datetime = AT
) -> list[ProjectedEvent]:
    """Projected events of one account, versions 1.., at offsets 10, 20, ..."""
    return [
        ProjectedEvent(
            partition,
            version * 10,
            view.project(name, {"aggregate_id": account, "version": version, "occurred_at": at, **payload}),
            account,
            version,
        )
        for version, (name, payload) in enumerate(events, start=1)
    ]


OPENED = ("AccountOpened", {"owner_id": "olga", "currency": "CHF", "overdraft_limit": 50})
ACCOUNT_EVENTS = [
    OPENED,
    ("MoneyDeposited", {"amount": 1000, "reference": "salary", "channel": "http"}),
    ("MoneyWithdrawn", {"amount": 1030, "reference": None}),
    (
        "AccountCredited",
        {"amount": 7, "transfer_id": "t1", "counterparty_account_id": "x", "reversal": False},
    ),
]


def test_a_batch_is_applied_with_its_checkpoints_and_read_back_by_the_views_queries(backend: Opener) -> None:
    async def scenario(b: Backend) -> None:
        await b.set_current(accounts.NAME, 1, {"state": "live"})
        store = b.store(accounts.NAME, 1)
        batch = history("a", ACCOUNT_EVENTS, accounts.VIEW) + history(
            "b", [OPENED], accounts.VIEW, partition=3
        )
        assert [e.offset for e in await store.apply(batch)] == [10, 20, 30, 40, 10]
        assert await store.load_checkpoints([0, 3, 5]) == {0: 40, 3: 10}

        summary = await accounts.account(b.reads, "a")
        assert summary is not None
        assert (summary["balance"], summary["version"], summary["currency"]) == (-23, 4, "CHF")
        entries = await accounts.transactions(b.reads, "a", 0, 10)
        assert entries is not None
        assert [(e["version"], e["type"], e["amount"], e["balance_after"]) for e in entries] == [
            (2, "deposit", 1000, 1000),
            (3, "withdrawal", 1030, -30),
            (4, "transfer_in", 7, -23),
        ]
        assert "reference" not in entries[1] and entries[2]["transfer_id"] == "t1"
        assert [e["version"] for e in await accounts.transactions(b.reads, "a", 2, 1) or []] == [3]
        assert await accounts.transactions(b.reads, "nobody", 0, 10) is None
        assert [e["version"] for e in await accounts.changes(b.reads, "a", 0)] == [1, 2, 3, 4]
        assert [r["account_id"] for r in await accounts.owner_accounts(b.reads, "olga")] == ["a", "b"]
        assert await accounts.owner_accounts(b.reads, "nobody") == []
        # Transfers are not in the daily totals.
        daily = await accounts.daily(b.reads, "2026-03-04", "CHF")
        assert daily == {"deposits": 1000, "withdrawals": 1030, "count": 2}
        assert await accounts.daily(b.reads, "2026-03-05", "CHF") == {
            "deposits": 0,
            "withdrawals": 0,
            "count": 0,
        }
        assert await accounts.account(b.reads, "nobody") is None

    run(backend, scenario)


def test_changes_merge_both_logs_in_version_order_without_skipping_past_a_full_page(backend: Opener) -> None:
    """What live updates resume from: the transactions and the other changes, merged."""

    async def scenario(b: Backend) -> None:
        await b.set_current(accounts.NAME, 1, {"state": "live"})
        money = [("MoneyDeposited", {"amount": 1, "reference": None, "channel": "x"})] * 7
        # Versions 1 opened, 2-4 money, 5 limit changed, 6-8 money, 9 closed.
        events = [OPENED, *money[:3], ("OverdraftLimitChanged", {"overdraft_limit": 9}), *money[3:6]]
        await b.store(accounts.NAME, 1).apply(history("a", [*events, ("AccountClosed", {})], accounts.VIEW))

        everything = await accounts.changes(b.reads, "a", 0)
        assert [c["version"] for c in everything] == list(range(1, 10))
        assert [c["type"] for c in everything if c["type"] != "deposit"] == [
            "opened",
            "overdraft_limit_changed",
            "closed",
        ]
        # A page of 3 from each log: transactions 2,3,4 and changes 1,5,9. Versions 6..8 are
        # behind the transactions page, so the merged page must stop at 4, not jump to 5 and 9.
        page = await accounts.changes(b.reads, "a", 0, limit=3)
        assert [c["version"] for c in page] == [1, 2, 3, 4]
        rest = await accounts.changes(b.reads, "a", 4, limit=3)
        assert [c["version"] for c in rest] == [5, 6, 7, 8]  # the transactions page ends at 8
        assert [c["version"] for c in await accounts.changes(b.reads, "a", 8, limit=3)] == [9]

    run(backend, scenario)


def deposit(partition: int, offset: int, amount: int) -> ProjectedEvent:
    ops = [HashIncrement("row:a", "balance", amount), HashSet("row:a", {"version": offset})]
    return ProjectedEvent(partition, offset, ops)  # type: ignore[arg-type]


def test_events_at_or_below_the_checkpoint_are_skipped(backend: Opener) -> None:
    async def scenario(b: Backend) -> None:
        await b.set_current("contract", 1, {"state": "live"})
        store = b.store("contract", 1)
        batch = [deposit(0, 1, 10), deposit(0, 2, 20), deposit(3, 7, 5)]
        assert len(await store.apply(batch)) == 3
        assert await store.apply(batch) == []  # at-least-once delivery, exactly-once effect
        assert [e.offset for e in await store.apply([deposit(0, 2, 20), deposit(0, 3, 1)])] == [3]
        assert store.known_checkpoints == {0: 3, 3: 7}
        # Another process (a restart) knows nothing yet: the stored checkpoints still decide.
        restarted = b.store("contract", 1)
        assert await restarted.apply([deposit(0, 3, 1), deposit(3, 7, 5)]) == []
        assert await b.reads.row("contract", "row:a") == {"balance": "36", "version": "3"}

    run(backend, scenario)


def test_concurrent_writers_of_one_partition_apply_each_event_once(backend: Opener) -> None:
    async def scenario(b: Backend) -> None:
        await b.set_current("contract", 1, {})
        stores = [b.store("contract", 1) for _ in range(4)]
        events = [deposit(0, offset, 1) for offset in range(1, 201)]

        async def replay(store: ViewStore) -> None:
            for start in range(0, 200, 5):  # overlapping batches, in log order
                await store.apply(events[start : start + 10])

        # Four writers that each believe they own the partition (as during a rebalance).
        await asyncio.gather(*(replay(s) for s in stores))
        assert await b.reads.row("contract", "row:a") == {"balance": "200", "version": "200"}

    run(backend, scenario)


def test_queries_answer_only_from_a_current_generation_that_is_not_being_rebuilt(backend: Opener) -> None:
    async def scenario(b: Backend) -> None:
        with pytest.raises(ViewNotReady):
            await b.reads.row("contract", "row:a")
        with pytest.raises(ViewNotReady):
            await b.reads.read("contract")
        await b.set_current("contract", 2, {"state": "rebuilding"})
        await b.store("contract", 2).apply([deposit(0, 1, 10)])
        with pytest.raises(ViewRebuilding):
            await b.reads.row("contract", "row:a")
        with pytest.raises(ViewRebuilding):
            await b.reads.read("contract")
        await b.store("contract", 2).go_live()
        assert await b.reads.row("contract", "row:a") == {"balance": "10", "version": "1"}
        await b.store("contract", 1).apply([deposit(0, 1, 99)])  # another generation: not read
        assert await b.reads.row("contract", "row:a") == {"balance": "10", "version": "1"}

    run(backend, scenario)


def test_a_generation_being_built_is_caught_up_at_its_targets(backend: Opener) -> None:
    async def scenario(b: Backend) -> None:
        await b.set_current("contract", 4, {"state": "rebuilding", f"{layout.TARGET}0": "2"})
        store = b.store("contract", 4)
        state = await store.generation_state()
        assert (state.current, state.meta_state, state.caught_up) == (4, "rebuilding", False)
        await store.apply([deposit(0, 1, 1), deposit(0, 2, 1)])
        assert (await store.generation_state()).caught_up
        await store.go_live()
        assert (await store.generation_state()).meta_state == "live"
        assert (await b.store("contract", 5).generation_state()).meta_state is None

    run(backend, scenario)


def test_a_marked_change_is_applied_once(backend: Opener) -> None:
    async def scenario(b: Backend) -> None:
        await b.set_current("contract", 1, {})
        store = b.store("contract", 1)
        ops = deposit(0, 1, 5).ops
        assert await store.apply_once("events.account:0:1", ops)
        assert not await store.apply_once("events.account:0:1", ops)
        assert await b.reads.row("contract", "row:a") == {"balance": "5", "version": "1"}

    run(backend, scenario)


def test_monthly_statements_from_a_history(backend: Opener) -> None:
    async def scenario(b: Backend) -> None:
        await b.set_current(statements.NAME, 1, {"state": "live"})
        march = history("a", ACCOUNT_EVENTS, statements.VIEW)
        may = [
            ProjectedEvent(0, 100 + n, statements.project(name, {"aggregate_id": "a", "version": 5 + n,
                           "occurred_at": datetime(2026, 5, 31, 23, 59, tzinfo=UTC), **payload}), "a", 5 + n)
            for n, (name, payload) in enumerate([
                ("MoneyDeposited", {"amount": 500, "reference": None, "channel": "http"}),
                ("AccountDebited", {"amount": 40, "transfer_id": "t2", "counterparty_account_id": "y"}),
                ("AccountCredited", {"amount": 40, "transfer_id": "t2", "counterparty_account_id": "y",
                                     "reversal": True}),
                ("AccountClosed", {}),
            ])
        ]  # fmt: skip
        await b.store(statements.NAME, 1).apply(march + may)
        got = await statements.statement(b.reads, "a", "2026-03")
        assert got == {
            "account_id": "a", "month": "2026-03", "currency": "CHF", "opening_balance": 0, "deposits": 1000,
            "withdrawals": 1030, "transfers_in": 7, "transfers_out": 0, "closing_balance": -23,
        }  # fmt: skip
        quiet = await statements.statement(b.reads, "a", "2026-04")
        assert quiet is not None and quiet["opening_balance"] == quiet["closing_balance"] == -23
        may_statement = await statements.statement(b.reads, "a", "2026-05")
        assert may_statement is not None
        figures = ("opening_balance", "deposits", "transfers_in", "transfers_out")
        assert [may_statement[k] for k in figures] == [-23, 500, 40, 40]
        assert may_statement["closing_balance"] == 477
        assert await statements.statement(b.reads, "a", "2026-02") is None  # before it was opened
        assert await statements.statement(b.reads, "nobody", "2026-03") is None

    run(backend, scenario)
