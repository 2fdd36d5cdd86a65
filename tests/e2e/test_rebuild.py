"""Replay and rebuild on the real pipeline: a zero-downtime rebuild of a 100,000-event view under
continuous reads and writes, and recovery after Redis loses everything (FLUSHALL)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import redis

from stream_processors.generations import Generations
from stream_processors.log_admin import LogAdmin
from tests.conftest import Stack
from tests.e2e.conftest import QUERY_PORT, Services, wait_ready
from tests.e2e.test_slice import read_until
from tests.support.kafka import Aggregate
from tests.support.projection import EventLog, deposits, wait_caught_up
from tests.support.tokens import bearer

pytestmark = pytest.mark.e2e


class Reader(threading.Thread):
    """Reads accounts as fast as it can; records anything a reader must never see."""

    def __init__(self, accounts: list[str]) -> None:
        super().__init__(daemon=True)
        self.accounts, self.stop = accounts, threading.Event()
        self.reads, self.problems = 0, list[str]()
        self.versions: dict[str, int] = {}

    def run(self) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{QUERY_PORT}", timeout=10, headers=bearer()) as client:
            while not self.stop.is_set():
                for account in self.accounts:
                    response = client.get(f"/accounts/{account}")
                    self.reads += 1
                    if response.status_code != 200:
                        self.problems.append(f"{account}: {response.status_code} {response.text[:200]}")
                        continue
                    version = response.json()["version"]
                    if version < self.versions.get(account, 0):
                        self.problems.append(f"{account}: version {version} after {self.versions[account]}")
                    self.versions[account] = max(version, self.versions.get(account, 0))


def cqrs(stack: Stack, *args: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap_servers,
        "REDIS_URL": stack.redis_url,
        "COLUMNS": "250",
    }
    cli = Path(sys.executable).with_name("cqrs")
    return subprocess.Popen(
        [str(cli), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


@pytest.mark.timeout(900)  # 100k events applied live, rebuilt, then verified by a scratch rebuild
def test_a_rebuild_of_a_100k_event_view_is_invisible_to_readers(
    running: Services, stack: Stack, unique: str
) -> None:
    c = running.commands
    client = redis.Redis.from_url(stack.redis_url)
    gens = Generations(client, "accounts")
    log_admin = LogAdmin(stack.kafka_bootstrap_servers)

    # 100,000 events for 500 accounts, appended as the command side appends them (transactions).
    bulk = [f"rb-{unique}-{n}" for n in range(500)]
    EventLog(Aggregate("account", stack.kafka_bootstrap_servers, 12)).append(deposits(bulk, 100_000))
    live = [
        c.post("/accounts", json={"owner_id": f"rb-{unique}", "currency": "EUR"}).json()["account_id"]
        for _ in range(4)
    ]
    old = gens.current()
    assert old is not None
    wait_caught_up(stack.redis_url, old, log_admin.last_event_offsets("events.account"), within_s=240)

    reader = Reader(live + bulk[:20])
    reader.start()
    rebuild = cqrs(stack, "views", "rebuild", "accounts", "--workers", "2", "--quiet")
    positions = []
    for n in range(40):  # writes while the new generation catches up
        answer = c.post(f"/accounts/{live[n % 4]}/deposits", json={"amount": 1 + n})
        assert answer.status_code == 200
        positions.append(answer.json()["position"])
        time.sleep(0.05)
    for position in positions:  # the live generation has every write...
        assert running.queries.get(f"/accounts/{live[0]}", params={"after": position}).status_code == 200
    assert gens.current() == old, "the rebuild finished before the test could take the old digest"
    before = gens.digest(old)  # ...and nothing else writes from here on
    assert gens.current() == old

    output, _ = rebuild.communicate(timeout=600)
    reader.stop.set()
    reader.join(30)
    assert rebuild.returncode == 0, output
    new = gens.current()
    assert new is not None and new > old, output
    assert f"generation {new} is live (was {old})" in output
    assert reader.reads > 100 and reader.problems == [], reader.problems[:10]
    assert gens.digest(new) == before
    assert gens.info(new).state == "live"
    assert old not in gens.known() and not list(client.scan_iter(match=f"view:accounts:g{old}:*", count=1000))
    # Following projectors moved to the new generation: a new write shows up in it.
    answer = c.post(f"/accounts/{live[0]}/deposits", json={"amount": 7}).json()
    params = {"after": answer["position"], "wait_ms": 10_000}
    body = running.queries.get(f"/accounts/{live[0]}", params=params, timeout=15).json()
    assert body["version"] == answer["version"]

    listed, _ = cqrs(stack, "views", "list").communicate(timeout=60)
    assert re.search(rf"│ accounts\s+│ events\.account\s+│ {new}\s+│ live\s+│ yes", listed), listed
    status, _ = cqrs(stack, "views", "status", "accounts").communicate(timeout=60)
    assert f"accounts generation {new} (live) group projector.account.accounts.g{new}" in status, status
    assert re.search(r"│ 0\s+│ \d+\s+│ \d+\s+│ 0\s+│", status), status  # caught up
    verify = cqrs(stack, "views", "verify", "accounts", "--workers", "2", "--quiet")
    verdict, _ = verify.communicate(timeout=600)
    assert verify.returncode == 0 and "identical" in verdict, verdict
    assert gens.known() == [new]  # the scratch generation is gone


@pytest.mark.timeout(600)  # the whole log is replayed by the live projector
def test_after_flushall_the_views_come_back_identical_without_manual_steps(
    running: Services, stack: Stack, unique: str
) -> None:
    c, q = running.commands, running.queries
    account = c.post("/accounts", json={"owner_id": f"fl-{unique}", "currency": "EUR"}).json()["account_id"]
    position = c.post(f"/accounts/{account}/deposits", json={"amount": 42}).json()["position"]
    seen = q.get(f"/accounts/{account}", params={"after": position}).json()
    client = redis.Redis.from_url(stack.redis_url)
    views = {name: Generations(client, name) for name in ("accounts", "transfers")}
    wait_ready(q)
    before = {name: (g.current(), g.digest(g.current() or 0)) for name, g in views.items()}

    client.flushall()
    statuses = set()
    deadline = time.monotonic() + 240
    while (ready := q.get("/readyz")).status_code != 200:
        response = q.get(f"/accounts/{account}")
        statuses.add((response.status_code, response.json().get("error")))
        # Never partial data, never a false 404: 503 until the accounts view is live again, then the
        # whole row (it may be live before the other views are, and /readyz waits for all of them).
        if response.status_code == 200:
            assert response.json() == seen, response.text
        else:
            assert response.status_code == 503, response.text
        assert time.monotonic() < deadline, ready.text
        time.sleep(0.1)
    assert statuses <= {(503, "view_not_ready"), (503, "view_rebuilding"), (200, None)}, statuses

    for name, gens in views.items():
        generation = gens.current()
        assert generation is not None and generation != before[name][0]
        assert gens.info(generation).state == "live"
        assert gens.digest(generation) == before[name][1], name
    assert read_until(q, f"/accounts/{account}", lambda r: r.status_code == 200).json() == seen
    # The lost generations' consumer groups are removed by the projectors (every 30 s).
    admin, deadline = LogAdmin(stack.kafka_bootstrap_servers), time.monotonic() + 120
    for name, source in (("accounts", "account"), ("transfers", "transfer")):
        left = [f"projector.{source}.{name}.g{views[name].current()}"]
        while (groups := admin.groups(f"projector.{source}.{name}.")) != left:
            assert time.monotonic() < deadline, f"groups of abandoned generations left: {groups}"
            time.sleep(1)
