"""The single writer's memory of handled commands is bounded by its window and its limit."""

from __future__ import annotations

import pytest

from producers.engine.handler import Outcome
from producers.engine.idempotency import IdempotencyMemory


def outcome(version: int) -> Outcome:
    return Outcome(True, version, f"events.x:0:{version}", None, None, "digest")


def test_an_outcome_is_remembered_by_its_command_id() -> None:
    memory = IdempotencyMemory(window_s=60, limit=10)
    memory.remember("c1", outcome(1), at=1000.0)
    assert memory.get("c1") == outcome(1)
    assert memory.get("c2") is None
    assert "c1" in memory and len(memory) == 1


def test_beyond_the_limit_the_oldest_outcomes_are_forgotten() -> None:
    memory = IdempotencyMemory(window_s=3600, limit=3)
    for version in range(1, 6):
        memory.remember(f"c{version}", outcome(version), at=1000.0 + version)
    assert [memory.get(f"c{v}") for v in range(1, 6)] == [None, None, outcome(3), outcome(4), outcome(5)]
    assert memory.forgotten == 2


def test_outcomes_older_than_the_window_are_forgotten() -> None:
    memory = IdempotencyMemory(window_s=60, limit=100)
    memory.remember("old", outcome(1), at=1000.0)
    memory.remember("recent", outcome(2), at=1030.0)
    memory.remember("now", outcome(3), at=1061.0)  # "old" is 61 s older: out of the window
    assert memory.get("old") is None
    assert memory.get("recent") == outcome(2) and memory.get("now") == outcome(3)
    assert memory.forgotten == 0  # the window, not the limit
    memory.expire(now=1091.0)
    assert memory.get("recent") is None and memory.get("now") == outcome(3)


def test_a_command_remembered_again_counts_from_its_new_time() -> None:
    memory = IdempotencyMemory(window_s=3600, limit=2)
    memory.remember("a", outcome(1), at=1.0)
    memory.remember("b", outcome(2), at=2.0)
    memory.remember("a", outcome(1), at=3.0)
    memory.remember("c", outcome(3), at=4.0)  # over the limit: "b" is now the oldest
    assert memory.get("a") == outcome(1) and memory.get("b") is None


def test_a_memory_holds_at_least_one_outcome() -> None:
    with pytest.raises(ValueError, match="at least one"):
        IdempotencyMemory(window_s=60, limit=0)


def test_the_first_outcome_forgotten_to_the_limit_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    memory = IdempotencyMemory(window_s=3600, limit=2)
    with caplog.at_level("WARNING", logger="producers.engine.idempotency"):
        for version in range(1, 6):
            memory.remember(f"c{version}", outcome(version), at=1000.0 + 10 * version)
    assert len(caplog.records) == 1, caplog.text
    assert "full (2 outcomes, the last 10s of commands)" in caplog.text
