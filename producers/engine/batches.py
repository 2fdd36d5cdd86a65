"""Low-latency batching over confluent-kafka: wait for the first message, then take what is queued.

`Consumer.consume(n, timeout)` waits until it has n messages or the timeout passes, so at a low
rate every call costs the whole timeout. This waits only for the first message.
"""

from __future__ import annotations

from confluent_kafka import Consumer, Message


def next_batch(consumer: Consumer, max_messages: int, wait_s: float, gather_s: float = 0.0) -> list[Message]:
    """Waits up to `wait_s` for a first message, then takes what is queued. With `gather_s`, a batch
    that found more than one message queued (messages come faster than batches are handled) waits
    up to that much longer for more: under load fewer, larger batches for a little latency; a lone
    message is never held."""
    first = consumer.consume(1, timeout=wait_s)
    if not first or max_messages == 1:
        return first
    batch = first + consumer.consume(max_messages - 1, timeout=0)
    if gather_s > 0 and 1 < len(batch) < max_messages:
        batch += consumer.consume(max_messages - len(batch), timeout=gather_s)
    return batch
