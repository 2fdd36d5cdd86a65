"""A faust transport (`kafka-rc://`) for projectors: reads committed records only, resumes after the
view's own checkpoints, and commits the group offsets that mirror what the view has applied.

- read_committed: faust turns it on only with its own exactly-once mode, which would also wrap
  our offset commits in transactions we do not need. Events come from transactional producers,
  so an aborted append must never reach a view.
- Resume: after faust's seek to the group's committed offsets, seek on to checkpoint + 1 (the
  Redis checkpoints are the truth for exactly-once; see ViewOffsets).
- Commits: faust commits "up to the first gap in acknowledged offsets", and every transaction
  marker is a gap, so its commits stopped at the first marker (a caught-up view showed ~95,000
  events of lag in `kafka-consumer-groups`) while it kept every acknowledged offset past the gap
  in memory (the projector's RSS grew ~200 bytes per event without end). This consumer commits,
  per partition, the offset after the view's checkpoint instead, skipping the markers and
  aborted records that follow it once everything fetched is applied, so Kafka's own tools show
  the true lag (0 when caught up); and it keeps no acknowledged offsets.
- Bulk delivery (when the view offers `batches`): each fetch of the source topic is handed over
  whole, as aiokafka's record lists, instead of one faust Message, Event and stream step per
  record; faust still runs the group, rebalances, flow control, commits, timers and the web
  server. faust's per-message path cost ~70 µs of CPU per event, more than the projection itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any, Protocol

import aiokafka
from faust.transport.drivers import aiokafka as driver
from faust.types import TP

Fetched = Mapping[TP, Sequence[Any]]  # aiokafka ConsumerRecords (offset, value ...) by partition


class FetchedBatches:
    """Whole fetches of the source topic, from the consumer to the one task that applies them, in
    the order the consumer returned them; none is ever dropped.

    That order keeps each partition gap-free: a fetch starts where the one before it ended, or
    where a seek put the consumer, and every seek goes to at most the view's checkpoint + 1 (the
    group's offsets, then the checkpoints). So each fetch starts at or below the checkpoint + 1
    when it is applied, also after a rebalance (the other member's writes only move the
    checkpoint up), and the view writer skips what is at or below it. Dropping a fetch (as faust
    does with messages fetched around a rebalance) would not be safe here: the consumer's
    position is already past it, so a later fetch would start beyond the checkpoint."""

    def __init__(self, prefetch: int) -> None:
        self._queue: asyncio.Queue[Fetched] = asyncio.Queue(maxsize=prefetch)

    async def put(self, fetched: Fetched) -> None:
        """Waits while `prefetch` fetches are queued: the consumer then stops fetching."""
        if fetched:
            await self._queue.put(fetched)

    async def take(self, max_records: int) -> AsyncIterator[list[Fetched]]:
        """Yields the fetches queued (at least one, then what else is queued up to `max_records`)."""
        queue = self._queue
        while True:
            taken = [await queue.get()]
            size = _size(taken[0])
            while size < max_records and not queue.empty():
                taken.append(queue.get_nowait())
                size += _size(taken[-1])
            yield taken


def _size(fetched: Fetched) -> int:
    return sum(len(records) for records in fetched.values())


class ViewOffsets(Protocol):
    """What the transport asks the projector (set as `app.view_offsets`)."""

    topic: str  # the source topic; other topics are left to faust
    batches: FetchedBatches  # where the source's records go, in bulk (no agent reads the topic)

    async def resume_positions(self, assigned: set[TP]) -> dict[TP, int]:
        """Where to read on from after an assignment: checkpoint + 1 where there is one."""
        ...

    def checkpoint(self, partition: int) -> int | None:
        """The offset of the last event the view has applied (None: nothing yet)."""
        ...

    async def committed(self, offsets: dict[int, int]) -> None:
        """Called after the group's offsets were committed (partition -> offset)."""
        ...


def commit_offset(checkpoint: int | None, fetched: tuple[int, int] | None) -> int | None:
    """The group offset that says "everything before this is applied".

    `fetched` is (highest data offset the consumer has returned, its position right after), taken
    together in the consumer's thread. When nothing fetched is beyond the checkpoint, everything
    between the checkpoint and the position is a transaction marker or an aborted record, so the
    position itself is committed; otherwise the offset after the checkpoint. With no checkpoint
    (nothing applied yet) and nothing fetched, a position past 0 was reached through markers and
    aborted records only (a partition whose every transaction was aborted): committed too, so
    Kafka's tools show no lag there."""
    applied = -1 if checkpoint is None else checkpoint
    if fetched is not None:
        highest, position = fetched
        if highest <= applied < position:
            return position
    return None if checkpoint is None else checkpoint + 1


class ConsumerThread(driver.AIOKafkaConsumerThread):
    # (topic, partition) -> (highest data offset returned, position after), replaced whole.
    fetched: Mapping[tuple[str, int], tuple[int, int]] = {}

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka keeps the constructor argument as-is until start(), when the fetcher reads it.
        consumer._isolation_level = "read_committed"
        return consumer

    async def _fetch_records(self, consumer: aiokafka.AIOKafkaConsumer, *args: Any, **kwargs: Any) -> Any:
        records = await super()._fetch_records(consumer, *args, **kwargs)
        # Runs in the consumer's thread: no fetch can move the positions between these lines.
        fetched = {}
        for tp in consumer.assignment():  # a partition no longer assigned drops out
            key = (tp.topic, tp.partition)
            position = _position(consumer, key)
            if position is None:
                continue
            highest = self.fetched.get(key, (-1, 0))[0]
            if messages := records.get(tp):
                highest = max(highest, messages[-1].offset)
            fetched[key] = (highest, position)
        self.fetched = fetched
        return records


def _position(consumer: aiokafka.AIOKafkaConsumer, key: tuple[str, int]) -> int | None:
    try:
        state = consumer._subscription.subscription.assignment.state_value(aiokafka.TopicPartition(*key))
    except AttributeError:  # not assigned any more (a rebalance)
        return None
    if state is None or not state.has_valid_position:
        return None
    return int(state.position)


class Consumer(driver.Consumer):
    _thread: ConsumerThread

    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    @property
    def _view(self) -> ViewOffsets | None:
        return getattr(self.app, "view_offsets", None)

    async def perform_seek(self) -> None:
        await super().perform_seek()
        view = self._view
        if view is not None:
            for tp, offset in (await view.resume_positions(set(self.assignment()))).items():
                await self.seek(tp, offset)

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Any]]:
        view = self._view
        if view is None:
            async for item in super().getmany(timeout):
                yield item
            return
        records, active = await self._wait_next_records(timeout)
        if records is None or self.should_stop:
            return
        # Everything fetched of the source goes to the projector, also around a rebalance (see
        # FetchedBatches: what it applies after losing a partition is skipped or continues the
        # checkpoint); other topics (none in a projector) take faust's path.
        await view.batches.put({tp: messages for tp, messages in records.items() if tp.topic == view.topic})
        if not self.flow_active:  # as faust's getmany: read on from the committed offsets
            try:
                await self.perform_seek()
            except Exception as exc:
                self.log.warning("exception performing seek when flow not active %r", exc)
            return
        to_message = self._to_message
        for tp, messages in records.items():
            if tp.topic != view.topic and (active is None or tp in active or tp in self._buffered_partitions):
                for record in messages:
                    yield tp, to_message(tp, record)

    def _filter_tps_with_pending_acks(self, topics: Any = None) -> Iterator[TP]:
        view = self._view
        if view is None:
            yield from super()._filter_tps_with_pending_acks(topics)
            return
        # Every assigned partition of the source, also one that only received markers lately.
        for tp in self.assignment():
            if tp.topic == view.topic and (topics is None or tp in topics or tp.topic in topics):
                yield tp

    def _new_offset(self, tp: TP) -> int | None:
        view = self._view
        if view is None or tp.topic != view.topic:
            return super()._new_offset(tp)
        # Acknowledged offsets say nothing here: the checkpoint does. Keep none of them.
        self._acked.pop(tp, None)
        self._acked_index.pop(tp, None)
        self._gap.pop(tp, None)
        return commit_offset(
            view.checkpoint(tp.partition), self._thread.fetched.get((tp.topic, tp.partition))
        )

    async def _commit(self, offsets: Mapping[TP, int]) -> bool:
        committed = await super()._commit(offsets)
        view = self._view
        if committed and view is not None:
            await view.committed({tp.partition: o for tp, o in offsets.items() if tp.topic == view.topic})
        return bool(committed)


class Transport(driver.Transport):
    Consumer = Consumer
