"""next_batch: a first message waited for, what is queued taken at once, and the gather wait only
for batches that found more than one message queued (a lone message is never held)."""

from __future__ import annotations

from typing import Any

from producers.engine.batches import next_batch


class FakeConsumer:
    """consume(n, timeout) as confluent-kafka's: up to n queued messages. `arrivals` arrive during
    the first wait after the first call (the wait for the first message finds `queued`)."""

    def __init__(self, queued: list[str], arrivals: list[str] | None = None) -> None:
        self.queued, self.arrivals = list(queued), list(arrivals or [])
        self.calls: list[tuple[int, float]] = []

    def consume(self, num_messages: int, timeout: float) -> list[Any]:
        self.calls.append((num_messages, timeout))
        if timeout > 0 and len(self.calls) > 1:
            self.queued += self.arrivals
            self.arrivals = []
        taken, self.queued = self.queued[:num_messages], self.queued[num_messages:]
        return taken


def test_a_lone_message_is_never_held() -> None:
    consumer = FakeConsumer(["a"], arrivals=["late"])
    assert next_batch(consumer, 500, 0.05, gather_s=0.01) == ["a"]  # type: ignore[arg-type]
    assert consumer.calls == [(1, 0.05), (499, 0)]


def test_a_batch_that_found_several_queued_waits_for_more() -> None:
    consumer = FakeConsumer(["a", "b"], arrivals=["c", "d"])
    assert next_batch(consumer, 500, 0.05, gather_s=0.01) == ["a", "b", "c", "d"]  # type: ignore[arg-type]
    assert consumer.calls == [(1, 0.05), (499, 0), (498, 0.01)]


def test_no_gather_wait_without_gather_or_when_the_batch_is_full() -> None:
    consumer = FakeConsumer(["a", "b"], arrivals=["c"])
    assert next_batch(consumer, 500, 0.05) == ["a", "b"]  # type: ignore[arg-type]
    full = FakeConsumer(["a", "b", "c"], arrivals=["d"])
    assert next_batch(full, 3, 0.05, gather_s=0.01) == ["a", "b", "c"]  # type: ignore[arg-type]
    assert full.calls == [(1, 0.05), (2, 0)]


def test_nothing_queued_returns_nothing() -> None:
    consumer = FakeConsumer([])
    assert next_batch(consumer, 500, 0.05, gather_s=0.01) == []  # type: ignore[arg-type]
    assert consumer.calls == [(1, 0.05)]
