"""Low-latency batching over confluent-kafka: wait for the first message, then take what is queued.

`Consumer.consume(n, timeout)` waits until it has n messages or the timeout passes, so at a low
rate every call costs the whole timeout. This waits only for the first message.
"""

from __future__ import annotations

from confluent_kafka import Consumer, Message


def next_batch(consumer: Consumer, max_messages: int, wait_s: float) -> list[Message]:
    first = consumer.consume(1, timeout=wait_s)
    if not first or max_messages == 1:
        return first
    return first + consumer.consume(max_messages - 1, timeout=0)
