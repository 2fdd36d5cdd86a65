"""The command side's view of Kafka's reachability and its error sorting, without Kafka: when the
command API answers 503 broker_unavailable (and when it does not even probe), and which librdkafka
errors the processor waits out, aborts, or replaces its producer for."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from confluent_kafka import KafkaError

from producers.api.broker_health import BrokerHealth
from producers.api.gateway import GatewayUnavailable
from producers.engine.kafka_errors import QuietLog, transient, unrecoverable
from tests.unit.test_command_api import FakeBus
from tests.unit.test_command_gateway import envelope, gateway


class Probe:
    def __init__(self) -> None:
        self.calls = 0
        self.fails = False

    def __call__(self) -> None:
        self.calls += 1
        if self.fails:
            raise RuntimeError("KafkaError{code=_TIMED_OUT}")


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def health() -> tuple[BrokerHealth, Probe, Clock]:
    probe, clock = Probe(), Clock()
    return BrokerHealth(probe, stall_s=2.0, clock=clock), probe, clock


def test_all_brokers_down_makes_it_unavailable_until_a_probe_gets_metadata() -> None:
    h, probe, _ = health()
    assert h.unavailable() is None
    h.on_client_error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
    assert "unreachable" in (h.unavailable() or "")
    probe.fails = True
    h.check()
    assert h.unavailable() is not None
    probe.fails = False
    h.check()
    assert h.unavailable() is None


def test_a_healthy_broker_is_never_probed_and_one_lost_connection_is_not_an_outage() -> None:
    h, probe, _ = health()
    h.on_client_error(KafkaError(KafkaError._TRANSPORT, "connection closed"))  # e.g. idle reaping
    h.sent("c1")
    h.check()
    assert probe.calls == 0 and h.unavailable() is None


def test_a_command_unacknowledged_too_long_probes_and_a_hung_broker_is_unavailable() -> None:
    h, probe, clock = health()
    h.sent("c1")
    clock.now += 1.0
    h.check()
    assert probe.calls == 0  # not stalled yet
    clock.now += 1.5
    probe.fails = True
    h.check()
    assert probe.calls == 1 and h.unavailable() is not None
    h.acked("c1")  # delivered once the broker answered
    probe.fails = False
    h.check()
    assert h.unavailable() is None
    h.check()
    assert probe.calls == 2  # nothing waits and it is up: no more probes


@pytest.mark.anyio
async def test_the_gateway_refuses_at_once_without_sending_while_the_broker_is_unavailable() -> None:
    gw, producer = gateway()
    gw.health.mark_down("Kafka is unreachable (1/1 brokers are down)")
    with pytest.raises(GatewayUnavailable, match="unreachable"):
        await asyncio.wait_for(gw.submit("account", envelope(), object()), 0.5)
    assert producer.sent == []


def test_the_api_answers_503_broker_unavailable_with_retry_after() -> None:
    from fastapi.testclient import TestClient

    from producers.api.app import create_app
    from producers.settings import CommandApiSettings
    from tests.support.tokens import bearer

    bus = FakeBus()
    bus.outcome = GatewayUnavailable("Kafka is unreachable (1/1 brokers are down)")
    with TestClient(create_app(CommandApiSettings(), gateway=bus), headers=bearer()) as client:
        response = client.post("/accounts/a-1/deposits", json={"amount": 5})
        documented = client.get("/openapi.json").json()
    assert response.status_code == 503
    assert response.json()["error"] == "broker_unavailable"
    assert int(response.headers["Retry-After"]) >= 1
    for path, method in (
        ("/accounts", "post"),
        ("/accounts/{account_id}/deposits", "post"),
        ("/transfers", "post"),
    ):
        assert "Retry-After" in documented["paths"][path][method]["responses"]["503"]["headers"]


@pytest.mark.parametrize(
    ("error", "waited_out", "exits"),
    [
        (KafkaError(KafkaError._TIMED_OUT, "t", retriable=True), True, False),
        (KafkaError(KafkaError._TRANSPORT, "refused"), True, False),
        (KafkaError(KafkaError._AUTHENTICATION, "a restarted broker's SCRAM cache"), True, False),
        (KafkaError(KafkaError._UNKNOWN_PARTITION, "watermarks right after a pause"), True, False),
        (KafkaError(KafkaError._TIMED_OUT, "offsets", txn_requires_abort=True), False, False),  # abort
        (KafkaError(KafkaError._FENCED, "fenced", fatal=True), False, False),  # new producer
        (KafkaError(KafkaError.INVALID_TXN_STATE, "fatal", fatal=True), False, False),
        (KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "acl"), False, True),
    ],
)
def test_error_sorting(error: KafkaError, waited_out: bool, exits: bool) -> None:
    assert transient(error) is waited_out
    assert unrecoverable(error) is exits


def test_quiet_log_says_the_first_and_then_one_line_per_period(caplog: Any) -> None:
    quiet = QuietLog(logging.getLogger("quiet"), every_s=3600)
    with caplog.at_level(logging.WARNING):
        for _ in range(50):
            quiet.warning("k", "broker away")
    assert len(caplog.records) == 1


def test_a_call_blocked_for_good_is_given_up_on_and_leaves_only_its_thread() -> None:
    import threading

    from producers.engine.processor import CallThread

    calls = CallThread()
    assert calls.run(lambda: 42, 1.0) == 42
    with pytest.raises(ValueError):
        calls.run(lambda: int("x"), 1.0)
    forever = threading.Event()
    with pytest.raises(TimeoutError):
        calls.run(forever.wait, 0.2)  # as librdkafka's send_offsets_to_transaction after a restart
    assert CallThread().run(lambda: "fresh", 1.0) == "fresh"
    forever.set()


def test_a_started_call_runs_while_the_caller_works_and_is_waited_for_as_a_bounded_call() -> None:
    import threading

    from producers.engine.kafka_errors import BoundedCalls, Stuck

    bounded = BoundedCalls(0.5)
    running = threading.Event()
    release = threading.Event()

    def call() -> str:
        running.set()
        release.wait(5)
        return "sent"

    wait = bounded.start("send_offsets_to_transaction", call)
    assert running.wait(2)  # started before it is waited for
    release.set()
    assert wait() == "sent"
    failing = bounded.start("send_offsets_to_transaction", lambda: int("x"))
    with pytest.raises(ValueError):
        failing()
    first = bounded.thread
    forever = threading.Event()
    stuck = bounded.start("send_offsets_to_transaction", forever.wait)
    with pytest.raises(Stuck):
        stuck()
    assert bounded.thread is not first  # the next calls get a fresh thread
    assert bounded("commit_transaction", lambda: "committed") == "committed"
    forever.set()
