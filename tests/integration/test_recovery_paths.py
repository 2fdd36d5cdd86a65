"""Recovery paths of the read side on the real Kafka and Redis: aborted appends never reach a view
(faust projector and catch-up worker), the search for a partition's last committed event when the
log ends in aborted records and markers (and a rebuild that terminates on it), and a generation
flip refused while the new generation is behind."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import redis

from schemas.keys import event_key
from stream_processors import layout
from stream_processors.generations import Generations
from stream_processors.log_admin import LogAdmin
from stream_processors.rebuild import Progress, Rebuilder, RebuildFailed, Workers
from stream_processors.recovery import group_id
from tests.conftest import Stack
from tests.integration.test_recovery_paths_commands import ids_on
from tests.support.kafka import Aggregate, read_topic
from tests.support.projection import (
    EventLog,
    ProjectorProcess,
    codec,
    deposits,
    digest,
    event,
    last_offsets,
    wait_caught_up,
)

pytestmark = pytest.mark.integration
VIEW = "accounts"
Records = list[tuple[str, str, dict[str, Any]]]


def private_redis(stack: Stack, db: int) -> str:
    """A Redis database of this test's own (the view's keys do not name the aggregate)."""
    url = f"{stack.redis_url.rsplit('/', 1)[0]}/{db}"
    redis.Redis.from_url(url).flushdb()
    return url


class AbortingLog(EventLog):
    """An EventLog that can also write a transaction and abort it, as a command processor does when
    a batch fails: the records are in the log (followed by an abort marker) but never committed."""

    def abort(self, records: Records) -> None:
        versions = dict(self.versions)
        self.producer.begin_transaction()
        for name, account, payload in records:
            version = versions[account] = versions.get(account, 0) + 1
            value = codec.encode(name, event(name, account, version, self.aggregate_type, **payload))
            self._produce(account, event_key(account, version), value)
        assert self.producer.flush(30) == 0  # written to the log, not only queued (abort purges the queue)
        self.producer.abort_transaction()  # the versions stay free, as after a failed batch


def opened(account: str) -> tuple[str, str, dict[str, Any]]:
    return ("AccountOpened", account, {"owner_id": "o", "currency": "EUR", "overdraft_limit": 0})


def deposit(account: str, amount: int) -> tuple[str, str, dict[str, Any]]:
    return ("MoneyDeposited", account, {"amount": amount, "reference": None, "channel": "t"})


def balances(records: Records) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, account, payload in records:
        out[account] = out.get(account, 0) + (payload["amount"] if name == "MoneyDeposited" else 0)
    return out


def summary(url: str, generation: int, account: str) -> dict[str, str]:
    client = redis.Redis.from_url(url, decode_responses=True)
    raw: dict[str, str] = client.hgetall(layout.prefix(VIEW, generation) + layout.account(account))  # type: ignore[assignment]
    return raw


def uncommitted_accounts(aggregate: Aggregate) -> dict[str, int]:
    """Records per aggregate id as a read_uncommitted reader sees the log (aborted ones too)."""
    seen: dict[str, int] = {}
    for *_, record in read_topic(aggregate.bootstrap, f"events.{aggregate.name}", committed=False):
        seen[record["aggregate_id"]] = seen.get(record["aggregate_id"], 0) + 1
    return seen


def live_generation(
    url: str, aggregate: Aggregate, generation: int = 1, checkpoints: dict[int, int] | None = None
) -> Generations:
    """A serving generation of the view over the aggregate's log, with its consumer group, as a
    projector leaves it (its data is not needed here)."""
    client = redis.Redis.from_url(url)
    gens = Generations(client, VIEW)
    gens.create(generation, reason="serving (test)", targets={}, checkpoints=checkpoints)
    assert gens.flip(generation)
    admin, topic = LogAdmin(aggregate.bootstrap), f"events.{aggregate.name}"
    admin.set_offsets(group_id(aggregate.name, VIEW, generation), topic, admin.earliest(topic))
    return gens


def within(seconds: float) -> Any:
    """An on_progress callback that ends a rebuild that has not finished in time."""
    deadline = time.monotonic() + seconds

    def check(progress: Progress) -> None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"still {progress.phase} after {seconds}s: {progress}")

    return check


def test_an_aborted_append_reaches_neither_the_projector_nor_a_catch_up_worker(
    stack: Stack, unique: str, tmp_path: Path
) -> None:
    aggregate = Aggregate.create(stack.kafka_bootstrap_servers, unique, partitions=3)
    url = private_redis(stack, 10)
    log = AbortingLog(aggregate)
    accounts = [f"ab{unique}-{i}" for i in range(6)]
    ghost, target = f"ghost{unique}", accounts[0]
    committed = deposits(accounts, 30)
    log.append(committed)
    # Aborted: an account that never was, and deposits whose versions are then taken by others.
    log.abort([opened(ghost), deposit(ghost, 500), deposit(target, 1_000_000), deposit(target, 2_000_000)])
    later = [deposit(target, 7), deposit(target, 8), deposit(accounts[1], 9)]
    log.append(later)
    committed += later

    seen = uncommitted_accounts(aggregate)
    assert seen[ghost] == 2, "the aborted records are in the log"
    assert seen[target] == sum(a == target for _, a, _ in committed) + 2
    ends = last_offsets(aggregate)  # of committed records

    projector = ProjectorProcess(aggregate, url, tmp_path, generation=1).start()
    worker = Workers(VIEW, 2, list(range(aggregate.partitions)), 1, tmp_path,
                     {"AGGREGATE": aggregate.name, "REDIS_URL": url})  # fmt: skip
    try:
        wait_caught_up(url, 1, ends, within_s=60)
        wait_caught_up(url, 2, ends, within_s=60)
        time.sleep(0.5)  # anything read past the committed ends would be applied by now
    finally:
        projector.stop()
        worker.stop()

    expected = balances(committed)
    versions = {a: sum(acc == a for _, acc, _ in committed) for a in accounts}
    for generation, reader in ((1, "faust projector"), (2, "catch-up worker")):
        assert summary(url, generation, ghost) == {}, f"{reader}: an aborted account is in the view"
        got = {a: int(summary(url, generation, a)["balance"]) for a in accounts}
        assert got == expected, f"{reader} applied aborted deposits"
        assert {a: int(summary(url, generation, a)["version"]) for a in accounts} == versions, reader
    assert digest(url, 1) == digest(url, 2)


def test_the_last_committed_event_is_found_behind_aborted_records_and_a_rebuild_ends_there(
    stack: Stack, unique: str, tmp_path: Path
) -> None:
    aggregate = Aggregate.create(stack.kafka_bootstrap_servers, unique, partitions=3)
    url = private_redis(stack, 11)
    topic = f"events.{aggregate.name}"
    (a,), (b,), (c,) = ids_on(aggregate, f"lc{unique}").values()
    log = AbortingLog(aggregate)
    committed = [opened(a), *(deposit(a, n) for n in range(1, 11)), opened(b), deposit(b, 3)]
    log.append(committed)
    # The log's end: partition 0 has more aborted records than the search's first window (64),
    # partition 1 a few, partition 2 nothing but aborted records; each then an abort marker.
    log.abort([*(deposit(a, 1000) for _ in range(100)), deposit(b, 1000), deposit(b, 1000), opened(c)])

    admin = LogAdmin(aggregate.bootstrap)
    last = last_offsets(aggregate)
    expected = {0: last[0], 1: last[1], 2: -1}
    assert expected[0] == 10 and expected[1] == 1  # 11 and 2 events, then a commit marker
    marks = admin.watermarks(topic)
    assert {p: high for p, (_, high) in marks.items()} == {0: 12 + 100 + 1, 1: 3 + 2 + 1, 2: 1 + 1}
    assert uncommitted_accounts(aggregate)[c] == 1  # the aborted records are really there

    assert admin.last_event_offsets(topic) == expected

    # A rebuild's target is that search's answer: its catch-up ends there, it does not wait for an
    # offset that will never be delivered.
    gens = live_generation(url, aggregate)
    rebuilder = Rebuilder(VIEW, redis_url=url, bootstrap=aggregate.bootstrap, log_dir=tmp_path,
                          source=aggregate.name)  # fmt: skip
    report = rebuilder.rebuild(on_progress=within(45), grace_s=0, worker_env={"REDIS_URL": url})
    assert (report.old, report.new, report.events) == (1, 2, 13)
    assert gens.current() == 2 and gens.info(2).state == "live"
    assert gens.checkpoints(2) == {0: 10, 1: 1}
    assert summary(url, 2, a)["balance"] == str(sum(range(1, 11)))
    assert summary(url, 2, c) == {}
    # Kafka's tools see the new generation caught up everywhere, also where every record was aborted.
    ends = {p: high for p, (_, high) in marks.items()}
    assert admin.committed(group_id(aggregate.name, VIEW, 2), topic) == ends


def test_a_flip_is_refused_while_the_new_generation_is_behind(stack: Stack) -> None:
    url = private_redis(stack, 12)
    gens = Generations(redis.Redis.from_url(url), VIEW)
    gens.create(1, reason="serving", targets={0: 9, 1: 4}, checkpoints={0: 9, 1: 4})
    assert gens.flip(1)
    gens.create(2, reason="rebuild", targets={0: 9, 1: 4}, checkpoints={0: 9})  # nothing on 1 yet

    assert not gens.flip(2)
    gens.create(2, reason="rebuild", targets={0: 9, 1: 4}, checkpoints={0: 12, 1: 3})  # ahead on 0
    assert not gens.flip(2), "one partition behind is enough to refuse"
    assert gens.current() == 1
    assert (gens.info(1).state, gens.info(2).state) == ("live", "rebuilding")

    gens.create(2, reason="rebuild", targets={0: 9, 1: 4}, checkpoints={0: 12, 1: 4})
    assert gens.flip(2)
    assert gens.current() == 2
    assert (gens.info(1).state, gens.info(2).state) == ("retired", "live")


class WatchedRebuilder(Rebuilder):
    """Keeps the catch-up workers at hand, to see they are stopped."""

    pool: Workers

    def _workers(self, generation: int, count: int, env: dict[str, str] | None) -> Workers:
        self.pool = super()._workers(generation, count, env)
        return self.pool


def test_a_rebuild_behind_the_serving_generation_fails_and_the_old_one_serves_on(
    stack: Stack, unique: str, tmp_path: Path
) -> None:
    aggregate = Aggregate.create(stack.kafka_bootstrap_servers, unique, partitions=2)
    url = private_redis(stack, 13)
    # Two accounts on each partition (four random ids can all land on one: a KeyError below).
    accounts = [a for ids in ids_on(aggregate, f"fb{unique}", per_partition=2).values() for a in ids]
    EventLog(aggregate).append(deposits(accounts, 20))
    ends = last_offsets(aggregate)
    # The serving generation has applied one event more on partition 0 than the log's last when
    # the rebuild computes its targets (events appended meanwhile that the workers cannot reach:
    # here, none are, so the new generation can never get there).
    ahead = {0: ends[0] + 1, 1: ends[1]}
    gens = live_generation(url, aggregate, checkpoints=ahead)

    rebuilder = WatchedRebuilder(VIEW, redis_url=url, bootstrap=aggregate.bootstrap, log_dir=tmp_path,
                                 source=aggregate.name)  # fmt: skip
    began = time.monotonic()
    with pytest.raises(RebuildFailed, match=r"generation 2 stays behind generation 1 .*0: \(\d+, \d+\)"):
        rebuilder.rebuild(on_progress=within(45), flip_timeout_s=2, grace_s=0, worker_env={"REDIS_URL": url})
    assert time.monotonic() - began < 45

    assert gens.current() == 1 and gens.info(1).state == "live"
    assert gens.checkpoints(1) == ahead
    assert 2 not in gens.known() and not gens.has_meta(2) and 2 not in gens.with_keys()
    admin = LogAdmin(aggregate.bootstrap)
    groups = admin.groups(f"projector.{aggregate.name}.{VIEW}.")
    assert groups == [group_id(aggregate.name, VIEW, 1)], "the new generation's group is removed"
    assert all(p.poll() is not None for p in rebuilder.pool.processes), "its workers are stopped"
