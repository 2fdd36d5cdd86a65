"""Read-your-writes: wait until a view has applied a log position, woken by the projector's
change notifications (Redis pub/sub), with a slow re-check of the checkpoint as a safety net."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict

import orjson
import redis.asyncio as redis

log = logging.getLogger(__name__)


class PositionWaiter:
    def __init__(self, client: redis.Redis, view: str, recheck_s: float = 0.25) -> None:
        self.client, self.view, self.recheck_s = client, view, recheck_s
        self._waiters: dict[int, list[tuple[int, asyncio.Future[None]]]] = defaultdict(list)
        self._listener: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._listener = asyncio.create_task(self._listen())

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener

    async def applied(self, partition: int, offset: int) -> bool:
        generation = await self.client.get(f"view:{self.view}:current")
        if generation is None:
            return False
        done = await self.client.hget(f"view:{self.view}:g{int(generation)}:checkpoints", str(partition))
        return done is not None and int(done) >= offset

    async def wait(self, partition: int, offset: int, timeout_s: float) -> bool:
        """True once the view's checkpoint for the partition has reached the offset."""
        if await self.applied(partition, offset):
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

    async def _listen(self) -> None:
        while True:
            try:
                pubsub = self.client.pubsub()
                await pubsub.psubscribe(f"view:{self.view}:changed:*")
                async for message in pubsub.listen():
                    if message.get("type") != "pmessage":
                        continue
                    change = orjson.loads(message["data"])
                    for target, future in list(self._waiters.get(change["partition"], [])):
                        if change["offset"] >= target and not future.done():
                            future.set_result(None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis went away: waiters fall back to re-checking
                log.warning("change notifications unavailable (%s); retrying", exc)
                await asyncio.sleep(1)
