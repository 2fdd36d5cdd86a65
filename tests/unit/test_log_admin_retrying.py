"""LogAdmin's retrying: what a fresh cluster or a topic created a moment ago answers for a while is
retried; anything else is raised at once."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from stream_processors.log_admin import retrying


def failing(codes: list[int]) -> tuple[list[int], object]:
    calls: list[int] = []

    def call() -> str:
        calls.append(1)
        if codes:
            raise KafkaException(KafkaError(codes.pop(0)))
        return "offsets"

    return calls, call


@pytest.mark.parametrize("code", [KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE])
def test_a_new_topic_without_leaders_yet_is_asked_again(code: int) -> None:
    calls, call = failing([code])
    assert retrying(call) == "offsets"  # type: ignore[arg-type]
    assert len(calls) == 2


def test_other_errors_are_raised_at_once() -> None:
    calls, call = failing([KafkaError.TOPIC_AUTHORIZATION_FAILED])
    with pytest.raises(KafkaException):
        retrying(call)  # type: ignore[arg-type]
    assert len(calls) == 1
