"""The command gateway's waiting, with a fake producer: every request waiting for one command id gets
the one outcome, whether it arrives alone or together with others."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from producers.api.gateway import CommandGateway, OutcomeTimeout
from producers.domain.account.commands import DepositMoney
from producers.domain.actor import Actor
from producers.engine.handler import CommandEnvelope, Outcome
from producers.settings import CommandApiSettings

pytestmark = pytest.mark.anyio  # the tests run on asyncio (anyio_backend)

APPLIED = Outcome(True, 2, "3-17", None, None, None)


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def produce(self, topic: str, **kwargs: Any) -> None:
        self.sent.append({"topic": topic, **kwargs})

    def poll(self, _timeout: float) -> int:
        return 0

    def flush(self, _timeout: float) -> int:
        return 0


class FakeConsumer:
    def close(self) -> None: ...


def envelope(command_id: str = "cmd-1", expected_version: int | None = None) -> CommandEnvelope:
    return CommandEnvelope(
        command_id=command_id,
        aggregate_id="acc-1",
        correlation_id=command_id,
        issued_at=datetime.now(UTC),
        expected_version=expected_version,
        actor=Actor("test-staff"),
    )


def gateway(timeout_s: float = 2.0) -> tuple[CommandGateway, FakeProducer]:
    producer = FakeProducer()
    settings = CommandApiSettings(command_timeout_s=timeout_s)
    gw = CommandGateway(settings, ["account"], producer=producer, consumer=FakeConsumer())  # type: ignore[arg-type]
    gw._loop = asyncio.get_running_loop()  # what start() does, without Kafka's metadata
    gw.topics, gw.partitions = {"account": "account"}, {"commands.account": 12}
    return gw, producer


async def answer_once_sent(gw: CommandGateway, producer: FakeProducer, outcome: Outcome) -> None:
    """The results reader: one result per command id, as the processor gives it."""
    while not producer.sent:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # let every concurrent request start waiting
    gw._resolve(producer.sent[0]["headers"][0][1].decode(), outcome)


async def test_concurrent_requests_for_one_command_id_all_get_its_one_outcome() -> None:
    gw, producer = gateway()
    command = DepositMoney(5, None, "http")
    requests = [gw.submit("account", envelope(), command) for _ in range(3)]
    *outcomes, _ = await asyncio.gather(*requests, answer_once_sent(gw, producer, APPLIED))
    assert outcomes == [APPLIED] * 3
    assert len(producer.sent) == 1  # the identical command is sent once
    assert "cmd-1" not in gw._waiters  # nothing left behind


async def test_a_request_with_another_payload_is_sent_after_the_first_is_answered() -> None:
    gw, producer = gateway()
    first = asyncio.ensure_future(gw.submit("account", envelope(), DepositMoney(5, None, "http")))
    other = asyncio.ensure_future(gw.submit("account", envelope(), DepositMoney(6, None, "http")))
    await asyncio.sleep(0.05)
    assert len(producer.sent) == 1  # the other waits: the processor judges it against the first
    gw._resolve("cmd-1", APPLIED)
    assert await first == APPLIED
    await asyncio.sleep(0.05)
    assert len(producer.sent) == 2
    reused = Outcome(False, 2, None, "idempotency_key_reused", "another payload", None)
    gw._resolve("cmd-1", reused)
    assert await other == reused


async def test_a_timed_out_request_leaves_nothing_and_a_retry_sends_again() -> None:
    gw, producer = gateway(timeout_s=0.1)
    with pytest.raises(OutcomeTimeout):
        await gw.submit("account", envelope(), DepositMoney(5, None, "http"))
    assert "cmd-1" not in gw._waiters
    retry = asyncio.ensure_future(gw.submit("account", envelope(), DepositMoney(5, None, "http")))
    await asyncio.sleep(0.02)
    gw._resolve("cmd-1", APPLIED)
    assert await retry == APPLIED
    assert len(producer.sent) == 2


async def test_one_request_giving_up_does_not_cancel_the_others() -> None:
    gw, _ = gateway()
    command = DepositMoney(5, None, "http")
    first = asyncio.ensure_future(gw.submit("account", envelope(), command))
    second = asyncio.ensure_future(gw.submit("account", envelope(), command))
    await asyncio.sleep(0.02)
    first.cancel()  # e.g. its client disconnected
    await asyncio.sleep(0.02)
    gw._resolve("cmd-1", APPLIED)
    assert await second == APPLIED
