"""Several projectors in one consumer group on the real Kafka and Redis: members join and are
killed while whole fetches are in flight, and the view still equals one projector's."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import redis

from tests.conftest import Stack
from tests.support.kafka import Aggregate
from tests.support.projection import (
    EventLog,
    ProjectorProcess,
    deposits,
    digest,
    last_offsets,
    wait_caught_up,
)

pytestmark = pytest.mark.integration


class Appender(threading.Thread):
    """Keeps appending deposits to the accounts until stopped, so the group is mid-stream whenever
    its membership changes, however fast the projectors are (a fixed backlog was once drained
    before the joins, which then tested nothing)."""

    def __init__(self, log: EventLog, accounts: list[str]) -> None:
        super().__init__(daemon=True)
        self.log, self.accounts = log, accounts
        self.appended = 0
        self.failure: BaseException | None = None
        self.stopping = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                batch = [("MoneyDeposited", self.accounts[(self.appended + n) % len(self.accounts)],
                          {"amount": 1 + n % 97, "reference": None, "channel": "test"})
                         for n in range(500)]  # fmt: skip
                self.log.append(batch, per_transaction=500)
                self.appended += len(batch)
                time.sleep(0.05)
        except BaseException as exc:  # reported by stop()
            self.failure = exc

    def stop(self) -> None:
        self.stopping.set()
        self.join(60)
        assert not self.is_alive() and self.failure is None, self.failure


@pytest.mark.timeout(600)
def test_rebalances_mid_stream_apply_every_event_once(stack: Stack, unique: str, tmp_path: Path) -> None:
    aggregate = Aggregate.create(stack.kafka_bootstrap_servers, unique, partitions=6)
    url = f"{stack.redis_url.rsplit('/', 1)[0]}/5"
    client = redis.Redis.from_url(url)
    client.flushdb()
    accounts = [f"g{unique}-{i}" for i in range(300)]
    log = EventLog(aggregate)
    log.append(deposits(accounts, 20_000))
    appender = Appender(log, accounts)

    def progress() -> int:
        return sum(int(v) + 1 for v in client.hgetall("view:accounts:g1:checkpoints").values())

    def member(n: int) -> ProjectorProcess:
        (tmp_path / f"m{n}").mkdir()
        # Small batches: many fetches queued and in flight when the group rebalances.
        return ProjectorProcess(aggregate, url, tmp_path / f"m{n}", env={"PROJECTOR_BATCH_SIZE": "200"})

    first = member(0).start()
    members = [first]
    appender.start()
    try:
        deadline = time.monotonic() + 60
        while progress() == 0:
            assert time.monotonic() < deadline, "the first member never applied anything"
            time.sleep(0.05)
        members += [member(1).start(), member(2).start()]  # two joins: rebalances mid-stream
        time.sleep(4)
        members[1].kill()  # its partitions move after the session timeout
        members.append(member(3).start())
        appended = appender.appended
        time.sleep(4)
        appender.stop()
        assert appender.appended > appended, "the log stopped growing before the last rebalance"
        ends = last_offsets(aggregate)
        wait_caught_up(url, 1, ends)
    finally:
        appender.stopping.set()
        for m in members:
            m.stop()
    grouped = digest(url, 1)

    alone = ProjectorProcess(aggregate, url, tmp_path, generation=2).start()
    try:
        wait_caught_up(url, 2, ends)
    finally:
        alone.stop()
    assert digest(url, 2) == grouped
    assert grouped[1] == 300 * 3 + 7 + 1  # summaries, transactions, change logs, owners, one day
