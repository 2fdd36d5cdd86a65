"""A view's change notifications (Redis pub/sub from the projector), one listener per process,
fanned out to read-your-writes waiters (by partition and offset) and live streams (by subject).
Notifications only wake readers: every answer is re-read from the view, so a lost message costs
at most one re-check period."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Iterator

import orjson
import redis.asyncio as redis

from stream_processors import layout

log = logging.getLogger(__name__)


class UnknownPartition(Exception):
    def __init__(self, partition: int, count: int) -> None:
        super().__init__(
            f"after: position names partition {partition}, but the log has partitions 0 to {count - 1}"
        )


class StreamSlot:
    def __init__(self, feed: ChangeNotifications) -> None:
        self._feed: ChangeNotifications | None = feed

    def release(self) -> None:
        if self._feed is not None:
            self._feed._slots -= 1
            self._feed = None


class ChangeNotifications:
    def __init__(self, client: redis.Redis, view: str, recheck_s: float = 0.25) -> None:
        self.client, self.view, self.recheck_s = client, view, recheck_s
        self._waiters: dict[int, list[tuple[int, asyncio.Future[None]]]] = defaultdict(list)
        self._watchers: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._listener: asyncio.Task[None] | None = None
        self.received = 0
        self.waits = {"applied": 0, "timed_out": 0}
        self._slots = 0  # live streams admitted (counted when admitted, not when they start)
        self._partitions: dict[int, int] = {}  # generation -> its source's partition count

    async def start(self) -> None:
        self._listener = asyncio.create_task(self._listen())

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener

    @property
    def streams(self) -> int:
        return self._slots

    def admit_stream(self, limit: int) -> StreamSlot | None:
        """A slot for one more live stream, or None at the limit. Taken and counted at once, in the
        request, so concurrent requests can never overshoot it; released exactly once."""
        if self._slots >= limit:
            return None
        self._slots += 1
        return StreamSlot(self)

    async def applied(self, partition: int, offset: int, generation: int | None = None) -> bool:
        """Whether the current generation (or `generation`, just read as current) has applied it."""
        if generation is None:
            raw = await self.client.get(layout.current(self.view))
            if raw is None:
                return False
            generation = int(raw)
        done = await self.client.hget(layout.checkpoints(self.view, int(generation)), str(partition))
        return done is not None and int(done) >= offset

    async def partitions(self, generation: int) -> int | None:
        """How many partitions the generation's source has, as its projectors report them (a lag
        per partition, empty ones included, in the generation's status); None before the first
        report (no check then). Remembered per generation: a source's partition count never
        changes, so a partition below it is answered without Redis; one at or above it is
        checked again (projectors that each report their own partitions may not all have)."""
        known = self._partitions.get(generation)
        if known is not None:
            return known
        fields = await self.client.hkeys(layout.status(self.view, generation))
        names = [f.decode() if isinstance(f, bytes) else str(f) for f in fields]
        lag = layout.LAG
        numbers = [int(n[len(lag) :]) for n in names if n.startswith(lag) and n[len(lag) :].isdigit()]
        if not numbers:
            return None
        count = max(numbers) + 1
        if len(self._partitions) >= 16:  # generations come and go: keep the latest few
            self._partitions.pop(min(self._partitions))
        self._partitions[generation] = count
        return count

    async def wait(self, partition: int, offset: int, timeout_s: float) -> bool:
        """True once the view's checkpoint for the partition has reached the offset. A partition
        the log does not have raises UnknownPartition (waiting could never end)."""
        raw = await self.client.get(layout.current(self.view))
        generation = int(raw) if raw is not None else None
        if generation is not None:
            count = await self.partitions(generation)
            if count is not None and partition >= count:
                self._partitions.pop(generation, None)  # reported partly? read the status again
                count = await self.partitions(generation)
                if count is not None and partition >= count:
                    raise UnknownPartition(partition, count)
        done = await self._wait(partition, offset, timeout_s, generation)
        self.waits["applied" if done else "timed_out"] += 1
        return done

    async def _wait(self, partition: int, offset: int, timeout_s: float, generation: int | None) -> bool:
        if generation is not None and await self.applied(partition, offset, generation):
            return True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            future: asyncio.Future[None] = loop.create_future()
            entry = (offset, future)
            self._waiters[partition].append(entry)
            try:
                if await self.applied(partition, offset):  # applied while we registered
                    return True
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(future, min(remaining, self.recheck_s))
                if await self.applied(partition, offset):
                    return True
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters[partition].remove(entry)

    @contextlib.contextmanager
    def watch(self, subject: str) -> Iterator[asyncio.Event]:
        """An event set whenever the subject's row changes; clear it before each re-read."""
        event = asyncio.Event()
        self._watchers[subject].add(event)
        try:
            yield event
        finally:
            watchers = self._watchers[subject]
            watchers.discard(event)
            if not watchers:
                del self._watchers[subject]

    def _dispatch(self, channel: str, data: bytes) -> None:
        self.received += 1
        change = orjson.loads(data)
        for target, future in list(self._waiters.get(change["partition"], [])):
            if change["offset"] >= target and not future.done():
                future.set_result(None)
        for event in self._watchers.get(layout.changed_subject(self.view, channel), ()):
            event.set()

    async def _listen(self) -> None:
        while True:
            try:
                pubsub = self.client.pubsub()
                await pubsub.psubscribe(layout.changes_pattern(self.view))
                async for message in pubsub.listen():
                    if message.get("type") == "pmessage":
                        channel = message["channel"]
                        self._dispatch(
                            channel.decode() if isinstance(channel, bytes) else channel, message["data"]
                        )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis went away: readers fall back to re-checking
                log.warning("change notifications unavailable (%s); retrying", exc)
                await asyncio.sleep(1)
