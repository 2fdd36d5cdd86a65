"""Offsets that tell the truth, driven by Kafka's own `kafka-consumer-groups` (ConsumerGroupCommand
from the kafka-tools jar, not our code): a caught-up view shows lag 0 on every partition, and an
offset reset made with it while the projector is stopped rebuilds the view on the zero-downtime
path (from the earliest offsets, or from a time)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
import redis

from infra.kafka_tools import run_tool
from infra.services import services
from infra.settings import StackSettings
from stream_processors.generations import Generations
from stream_processors.log_admin import LogAdmin
from tests.conftest import Stack
from tests.e2e.conftest import COMMAND_PORT, PROJECTOR_PORT, QUERY_PORT, Services, wait_ready
from tests.e2e.test_rebuild import Reader, cqrs

pytestmark = pytest.mark.e2e
TOPIC = "events.account"


def consumer_groups(stack: Stack, *args: str) -> str:
    """Kafka's own ConsumerGroupCommand, run from the broker's jars: what it printed."""
    args = ("--bootstrap-server", stack.kafka_bootstrap_servers, *args)
    run = run_tool(
        StackSettings(), "consumer-groups", list(args), capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout + run.stderr  # where its errors go has changed between releases


def describe(stack: Stack, group: str) -> dict[int, tuple[int, int, int]]:
    """partition -> (current offset, log-end offset, lag) as kafka-consumer-groups shows them."""
    rows = {}
    for line in consumer_groups(stack, "--describe", "--group", group).splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[0] == group and fields[1] == TOPIC and fields[3].isdigit():
            rows[int(fields[2])] = (int(fields[3]), int(fields[4]), int(fields[5]))
    return rows


def wait_lag_zero(stack: Stack, group: str, within_s: float = 60) -> dict[int, tuple[int, int, int]]:
    deadline = time.monotonic() + within_s
    while True:
        rows = describe(stack, group)
        if len(rows) == 12 and all(lag == 0 for _, _, lag in rows.values()):
            return rows
        assert time.monotonic() < deadline, f"lag never reached 0: {rows}"
        time.sleep(1)


def reset_offsets(stack: Stack, group: str, *how: str, within_s: float = 120) -> None:
    """Kafka's tool resets only an inactive group, and says so on stdout with exit code 0 when it is
    not: a projector stopped while it was joining leaves a member until its session times out. So
    it is retried until the group is empty, and the new offsets must be in its answer."""
    deadline = time.monotonic() + within_s
    while True:
        out = consumer_groups(stack, "--group", group, "--topic", TOPIC, "--reset-offsets", *how, "--execute")
        if "Error" not in out:
            break
        assert "inactive" in out and time.monotonic() < deadline, out
        time.sleep(2)
    assert sum(line.startswith(f"{group} ") for line in out.splitlines()) == 12, out  # a new offset each


def projector(running: Services) -> object:
    return next(s for s in services(COMMAND_PORT, QUERY_PORT, PROJECTOR_PORT) if s.name == "projector")


def reset_and_restart(
    running: Services, stack: Stack, gens: Generations, readers: list[str], *how: str
) -> int:
    """Stop the projector, reset its group with kafka-consumer-groups, start it again; returns the
    generation it built, once live. Readers read throughout."""
    old = gens.current()
    assert old is not None
    group = f"projector.account.accounts.g{old}"
    service = projector(running)
    running.runner.stop_all([service])  # type: ignore[list-item]
    reader = Reader(readers)
    reader.start()
    try:
        reset_offsets(stack, group, *how)
        running.runner.start(service)  # type: ignore[arg-type]
        deadline = time.monotonic() + 300
        while (gens.current() == old or gens.info(gens.current() or 0).state != "live") and (
            time.monotonic() < deadline
        ):
            time.sleep(0.5)
        new = gens.current()
        assert new is not None and new != old, f"no new generation after the reset of {group}"
        running.runner.wait_healthy(service)  # type: ignore[arg-type]
    finally:
        reader.stop.set()
        reader.join(30)
    assert reader.reads > 20 and reader.problems == [], reader.problems[:10]
    assert "by an operator" in gens.info(new).reason and group in gens.info(new).reason
    deadline = time.monotonic() + 60  # the old group goes once the flip is done
    while group in LogAdmin(stack.kafka_bootstrap_servers).groups("projector.account.accounts."):
        assert time.monotonic() < deadline, f"{group} was not removed"
        time.sleep(1)
    return new


@pytest.mark.timeout(900)  # two rebuilds of the whole account log, then a verification
def test_kafka_consumer_groups_shows_true_lag_and_its_reset_rebuilds_the_view(
    running: Services, stack: Stack, unique: str
) -> None:
    c, q = running.commands, running.queries
    client = redis.Redis.from_url(stack.redis_url)
    gens = Generations(client, "accounts")
    wait_ready(q)

    early = [c.post("/accounts", json={"owner_id": f"or-{unique}", "currency": "EUR"}).json()["account_id"]
             for _ in range(3)]  # fmt: skip
    for n, account in enumerate(early):
        assert c.post(f"/accounts/{account}/deposits", json={"amount": 100 + n}).status_code == 200
    time.sleep(1.5)  # a clear second between the two sets of events (a time reset has ms resolution)
    since = datetime.now(UTC)
    late = [c.post("/accounts", json={"owner_id": f"or-{unique}", "currency": "EUR"}).json()["account_id"]
            for _ in range(3)]  # fmt: skip
    for n, account in enumerate(late):
        last = c.post(f"/accounts/{account}/deposits", json={"amount": 200 + n}).json()
    assert (
        q.get(f"/accounts/{late[-1]}", params={"after": last["position"], "wait_ms": 10_000}).status_code
        == 200
    )

    # 1. A caught-up view: lag 0 on every partition, transaction markers included.
    g1 = gens.current()
    before_describe = wait_lag_zero(stack, f"projector.account.accounts.g{g1}")
    assert all(current == end for current, end, _ in before_describe.values())

    # 2. A reset to a time builds a generation of the events since then, as documented.
    g2 = reset_and_restart(
        running, stack, gens, late, "--to-datetime", since.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    )
    for n, account in enumerate(late):
        assert q.get(f"/accounts/{account}").json()["balance"] == 200 + n
    assert q.get(f"/accounts/{early[0]}").status_code == 404  # opened before that time: not in it

    # 3. Damage a row, reset to the earliest: the whole view is rebuilt and the row is right again.
    expected = {a: q.get(f"/accounts/{a}").json() for a in late}
    client.hset(f"view:accounts:g{g2}:account:{late[0]}", "balance", 999_999)
    assert q.get(f"/accounts/{late[0]}").json()["balance"] == 999_999
    g3 = reset_and_restart(running, stack, gens, late, "--to-earliest")
    assert g3 > g2
    for account in late:
        assert q.get(f"/accounts/{account}").json() == expected[account]
    for n, account in enumerate(early):
        assert q.get(f"/accounts/{account}").json()["balance"] == 100 + n
    after_describe = wait_lag_zero(stack, f"projector.account.accounts.g{g3}")
    assert set(after_describe) == set(range(12))
    verify = cqrs(stack, "views", "verify", "accounts", "--workers", "2", "--quiet")
    verdict, _ = verify.communicate(timeout=600)
    assert verify.returncode == 0 and "identical" in verdict, verdict  # equals a scratch rebuild
    groups = LogAdmin(stack.kafka_bootstrap_servers).groups("projector.account.accounts.")
    assert groups == [f"projector.account.accounts.g{g3}"], groups
    print(f"\nbefore the resets (g{g1}): {sorted(before_describe.items())}")
    print(f"after the resets (g{g3}): {sorted(after_describe.items())}")
    listed, _ = cqrs(stack, "views", "list").communicate(timeout=60)
    assert "operator" in listed, listed  # the reason is listed
