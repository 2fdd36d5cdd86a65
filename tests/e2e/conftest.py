"""The four services and the gateway as processes against the real Kafka and Redis, shared by the
e2e tests."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from infra.gateway import Gateway
from infra.services import ServiceRunner, services
from infra.settings import StackSettings
from tests.conftest import Stack
from tests.support.tokens import bearer

COMMAND_PORT = int(os.environ.get("COMMAND_API_PORT", "18001"))
QUERY_PORT = int(os.environ.get("QUERY_API_PORT", "18002"))
PROJECTOR_PORT = int(os.environ.get("PROJECTOR_METRICS_PORT", "18011"))
GATEWAY_PORT = int(os.environ.get("GATEWAY_PORT", "18000"))
# A web page on another origin than the APIs (tests/e2e/test_browser.py) that the query API allows.
PAGE_ORIGIN = f"http://127.0.0.1:{GATEWAY_PORT + 50}"


@dataclass
class Services:
    commands: httpx.Client
    queries: httpx.Client
    runner: ServiceRunner
    gateway: httpx.Client  # nginx on GATEWAY_PORT: writes to `commands`, reads to `queries`

    def restart(self, name: str) -> None:
        service = next(s for s in services(COMMAND_PORT, QUERY_PORT, PROJECTOR_PORT) if s.name == name)
        self.runner.stop_all([service])
        self.runner.start(service)
        self.runner.wait_healthy(service)


def wait_ready(queries: httpx.Client, within_s: float = 180) -> None:
    """Views are built (or rebuilt) from the log on a first start; queries answer once caught up."""
    deadline = time.monotonic() + within_s
    while (response := queries.get("/readyz")).status_code != 200:
        assert time.monotonic() < deadline, f"the query API never became ready: {response.text}"
        time.sleep(0.2)


def wait_commands_served(commands: httpx.Client, within_s: float = 180) -> None:
    """The command processors answer once they have loaded their partitions (on a stack that
    has grown, a first command can otherwise time out): open one account, retried with one key."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            response = commands.post("/accounts", json={"owner_id": "e2e-probe", "currency": "EUR"},
                                     headers={"Idempotency-Key": "e2e-readiness-probe"})  # fmt: skip
            if response.status_code == 201:
                return
        except httpx.TimeoutException:
            pass
        assert time.monotonic() < deadline, "the command processors never answered"
        time.sleep(0.5)


@pytest.fixture(scope="session")
def running(stack: Stack) -> Iterator[Services]:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap_servers,
        "REDIS_URL": stack.redis_url,
        "COMMAND_API_PORT": str(COMMAND_PORT),
        "QUERY_API_PORT": str(QUERY_PORT),
        "PROJECTOR_METRICS_PORT": str(PROJECTOR_PORT),
        "QUERY_API_CORS_ORIGINS": PAGE_ORIGIN,
    }
    runner = ServiceRunner(StackSettings(), env=env)
    gateway = Gateway(StackSettings(), GATEWAY_PORT, COMMAND_PORT, QUERY_PORT)
    staff = bearer()  # every scope, any account
    try:
        for service in services(COMMAND_PORT, QUERY_PORT, PROJECTOR_PORT):
            runner.start(service)
            runner.wait_healthy(service)
        gateway.start()
        with (
            httpx.Client(base_url=f"http://127.0.0.1:{COMMAND_PORT}", timeout=15, headers=staff) as commands,
            httpx.Client(base_url=f"http://127.0.0.1:{QUERY_PORT}", timeout=5, headers=staff) as queries,
            httpx.Client(base_url=gateway.url, timeout=15, headers=staff) as through_gateway,
        ):
            wait_ready(queries)
            wait_commands_served(commands)
            yield Services(commands, queries, runner, through_gateway)
    finally:
        gateway.stop()
        runner.stop_all(runner.started)
