"""A view defined in tests alone (tests/support/toy_view.py), registered through
CQRS_EXTRA_MODULES and built by a real projector process from a real log: first from the whole log
on its first start, then live."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from stream_processors import layout
from stream_processors.generations import Generations
from tests.conftest import Stack
from tests.support import toy_view
from tests.support.kafka import Aggregate
from tests.support.projection import EventLog, ProjectorProcess, deposits

pytestmark = pytest.mark.e2e
REDIS_DB = 9  # a database of its own: the view starts with no state at all


def test_a_toy_view_from_tests_is_backfilled_then_kept_up_to_date(
    stack: Stack, unique: str, tmp_path: Path
) -> None:
    aggregate = Aggregate.create(stack.kafka_bootstrap_servers, unique, partitions=3)
    url = f"{stack.redis_url.rsplit('/', 1)[0]}/{REDIS_DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    accounts = [f"toy{unique}-{i}" for i in range(5)]
    log = EventLog(aggregate)
    log.append(deposits(accounts, 105))  # 5 opened, 100 deposits: before the view exists

    env = {"CQRS_EXTRA_MODULES": "tests.support.toy_view", "PROJECTOR_VIEW": toy_view.NAME}
    projector = ProjectorProcess(aggregate, url, tmp_path, generation=None, env=env).start()
    gens = Generations(client, toy_view.NAME)
    try:
        expected = expected_counts(accounts, deposits(accounts, 105))
        wait_for(lambda: live_generation(gens) is not None, "the first generation never went live", projector)
        generation = live_generation(gens)
        assert generation is not None and gens.info(generation).reason == "first build"
        wait_for(
            lambda: counts(client, generation, accounts) == expected, "the backfill is incomplete", projector
        )

        more = [("MoneyDeposited", accounts[0], {"amount": 1000, "reference": None, "channel": "test"})]
        log.append(more)
        expected[accounts[0]] = (expected[accounts[0]][0] + 1, expected[accounts[0]][1] + 1000)
        wait_for(
            lambda: counts(client, generation, accounts) == expected,
            "a live deposit was not counted",
            projector,
        )
    finally:
        projector.stop()


def expected_counts(
    accounts: list[str], records: list[tuple[str, str, dict[str, int]]]
) -> dict[str, tuple[int, int]]:
    totals = {a: (0, 0) for a in accounts}
    for name, account, payload in records:
        if name == "MoneyDeposited":
            count, amount = totals[account]
            totals[account] = (count + 1, amount + payload["amount"])
    return totals


def live_generation(gens: Generations) -> int | None:
    current = gens.current()
    return current if current is not None and gens.info(current).state == "live" else None


def counts(client: redis.Redis, generation: int, accounts: list[str]) -> dict[str, tuple[int, int]]:
    out = {}
    for account in accounts:
        row = client.hgetall(layout.prefix(toy_view.NAME, generation) + toy_view.deposits_key(account))
        out[account] = (int(row.get(b"count", 0)), int(row.get(b"amount", 0)))
    return out


def wait_for(check: object, problem: str, projector: ProjectorProcess, within_s: float = 120) -> None:
    deadline = time.monotonic() + within_s
    while not check():  # type: ignore[operator]
        assert projector.process is not None and projector.process.poll() is None, projector.log.read_text()
        assert time.monotonic() < deadline, f"{problem}; projector log:\n{projector.log.read_text()[-3000:]}"
        time.sleep(0.2)
