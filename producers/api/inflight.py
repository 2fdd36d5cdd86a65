"""One outcome per command id, shared by every request that waits for it at the same time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from producers.engine.handler import Outcome


@dataclass
class _Entry:
    payload: Hashable  # what is sent: requests with the same id and payload share one command
    future: asyncio.Future[Outcome]
    waiting: int = 0


@dataclass
class InFlight:
    """Commands sent and not yet answered, by command id.

    Concurrent requests with one Idempotency-Key have one command id. The identical ones share the
    command: it is sent once and every request gets its one outcome (sending it again would be
    safe, the processor being idempotent, but costs a command and a result for nothing). One with
    another payload waits until the first is answered and is sent then, so the processor judges it
    against the recorded first (`idempotency_key_reused`) rather than the two racing."""

    entries: dict[str, _Entry] = field(default_factory=dict)

    def __contains__(self, command_id: str) -> bool:
        return command_id in self.entries

    async def outcome(
        self,
        command_id: str,
        payload: Hashable,
        send: Callable[[], None],
        timeout_s: float,
    ) -> Outcome:
        """The command's outcome: `send` is called unless an identical command is in flight.
        Raises TimeoutError after `timeout_s`, or what the command's future was failed with."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while (entry := self.entries.get(command_id)) is not None and entry.payload != payload:
            await asyncio.wait([entry.future], timeout=deadline - loop.time())
            if loop.time() >= deadline:
                raise TimeoutError
        if entry is None:
            entry = self.entries[command_id] = _Entry(payload, loop.create_future())
            try:
                send()
            except BaseException:
                self._forget(command_id, entry)
                raise
        entry.waiting += 1
        try:
            # shield: one request giving up (timeout, disconnect) must not cancel the others' wait
            return await asyncio.wait_for(asyncio.shield(entry.future), max(deadline - loop.time(), 0))
        finally:
            entry.waiting -= 1
            if entry.waiting == 0:
                self._forget(command_id, entry)  # nobody waits: a retry sends the command again

    def settle(self, command_id: str, result: Outcome | Exception) -> None:
        """Give every waiter of `command_id` its answer; on the event loop's thread."""
        entry = self.entries.pop(command_id, None)
        if entry is None or entry.future.done():
            return
        if isinstance(result, Exception):
            entry.future.set_exception(result)
        else:
            entry.future.set_result(result)

    def _forget(self, command_id: str, entry: _Entry) -> None:
        if self.entries.get(command_id) is entry:
            del self.entries[command_id]
        if not entry.future.done():
            entry.future.cancel()  # wakes a request with another payload waiting for this one
