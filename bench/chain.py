"""One private chain of services for the HTTP benchmarks (bench/command_http.py, bench/soak.py):
command API -> commands.<agg> -> command processor -> events.<agg> -> projector -> Redis (the
bench's database) -> query API, each one process, on ports derived from the stack's, with topics
of their own; and accounts opened over HTTP, visible in the view before any timing starts."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import redis

from bench.common import bootstrap, port, redis_url, service_runner, stack_settings, unique
from infra import processes
from infra.services import ServiceRunner, services
from tests.support.kafka import Aggregate

DB = 14  # a database no test uses (the tests use 0, 2-4, 6, 7, 10-13)
NAMES = ("query-api", "projector", "command-processor-account", "command-api")


@dataclass(frozen=True)
class Chain:
    commands: str  # command API base URL
    queries: str  # query API base URL
    accounts: list[str]  # opened, and applied by the view
    topics: str  # the topic suffix
    runner: ServiceRunner

    def pids(self) -> dict[str, int]:
        """The services' process ids, by name."""
        found = {name: processes.running_pid(self.runner.dir / f"{name}.pid") for name in NAMES}
        return {name: pid for name, pid in found.items() if pid}

    def server_pids(self) -> dict[str, int]:
        """The stack's Kafka broker(s) and Redis, by name (those this machine runs)."""
        stack = stack_settings().stack_dir.resolve()
        files = {f.parent.name: f for f in sorted(stack.glob("kafka*/kafka.pid"))}
        files["redis"] = stack / "redis" / "redis.pid"
        found = {name: processes.running_pid(f) for name, f in files.items()}
        return {name: pid for name, pid in found.items() if pid}


@contextmanager
def running(token: str, accounts: int, partitions: int, **env: str) -> Iterator[Chain]:
    """The chain started, healthy and holding `accounts` open accounts; stopped (and the bench's
    Redis database emptied) on the way out. `env`: settings for every service of the chain."""
    aggregate = Aggregate.create(bootstrap(), unique("h"), partitions=partitions)
    ports = {"command": port(10), "query": port(11), "projector": port(12)}
    url = redis_url(DB)
    redis.Redis.from_url(url).flushdb()
    runner = service_runner(
        {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap(),
            "REDIS_URL": url,
            "COMMAND_API_PORT": str(ports["command"]),
            "COMMAND_API_AGGREGATES": "account",
            "QUERY_API_PORT": str(ports["query"]),
            "PROJECTOR_METRICS_PORT": str(ports["projector"]),
            "PROJECTOR_LOG_LEVEL": "warn",
            "AGGREGATE": aggregate.name,  # the projector's source; the processor's own setting wins
            "TOPIC_SUFFIX": aggregate.name,
            "PROCESSOR_GROUP_ID": f"command-processor.{aggregate.name}",
            "PROCESSOR_INSTANCE_ID": "bench",
            **env,
        }
    )
    chain = [s for s in services(ports["command"], ports["query"], ports["projector"]) if s.name in NAMES]
    commands, queries = (f"http://127.0.0.1:{ports[n]}" for n in ("command", "query"))
    try:
        for service in chain:
            runner.start(service)
        for service in chain:
            runner.wait_healthy(service, timeout_s=180)
        opened, position = open_accounts(commands, token, accounts)
        wait_visible(queries, token, opened[-1], position)
        yield Chain(commands, queries, opened, aggregate.name, runner)
    finally:
        runner.stop_all(runner.started)
        redis.Redis.from_url(url).flushdb()


def open_accounts(base: str, token: str, count: int, within_s: float = 180) -> tuple[list[str], str]:
    """Opens `count` accounts (retrying the first until the processor serves); their ids and the
    position of the last."""
    headers = {"authorization": f"Bearer {token}"}
    ids: list[str] = []
    position = ""
    deadline = time.monotonic() + within_s
    with httpx.Client(base_url=base, timeout=30, headers=headers) as client:
        while len(ids) < count:
            try:
                response = client.post("/accounts", json={"owner_id": "bench", "currency": "EUR"})
            except httpx.TimeoutException:
                response = None
            if response is not None and response.status_code == 201:
                ids.append(response.json()["account_id"])
                position = response.headers["X-Position"]
            elif not ids and time.monotonic() < deadline:
                time.sleep(0.5)
            else:
                raise RuntimeError(f"opening an account failed: {response and response.text}")
    return ids, position


def wait_visible(queries: str, token: str, account: str, position: str, within_s: float = 120) -> None:
    """Waits until the view has applied `position` (the projector has caught up to it)."""
    deadline = time.monotonic() + within_s
    headers = {"authorization": f"Bearer {token}"}
    while time.monotonic() < deadline:
        response = httpx.get(
            f"{queries}/accounts/{account}", params={"after": position, "wait_ms": 10000},
            headers=headers, timeout=15,
        )  # fmt: skip
        if response.status_code == 200:
            return
    raise RuntimeError(f"the view never applied {position}")


def balances(queries: str, token: str, accounts: list[str]) -> dict[str, int]:
    """Each account's balance in the view (minor units)."""
    headers = {"authorization": f"Bearer {token}"}
    with httpx.Client(base_url=queries, timeout=30, headers=headers) as client:
        return {a: int(client.get(f"/accounts/{a}").raise_for_status().json()["balance"]) for a in accounts}
