"""The single writer's memory of handled commands, per partition: a retry with the same command id
gets the first outcome. Bounded: the results topic (its retention is the window) is the whole
idempotency log, and a processor at a sustained rate would otherwise hold a day of outcomes."""

from __future__ import annotations

import logging
from collections import OrderedDict

from producers.engine.handler import Outcome
from schemas.topics import DAY_MS

log = logging.getLogger(__name__)

# The defaults of ProcessorSettings.processor_idempotency_window_s and _max_commands.
WINDOW_S = DAY_MS / 1000  # the results topic's retention: what a restart reloads
MAX_COMMANDS = 200_000  # per processor
LIMIT = MAX_COMMANDS // 12  # per partition, over the default 12 (the processor divides its own)


class IdempotencyMemory:
    """Outcomes by command id, oldest first; entries older than `window_s` (by the results'
    timestamps) are forgotten, and so is the oldest once more than `limit` are held."""

    __slots__ = ("_outcomes", "forgotten", "limit", "window_s")

    def __init__(self, window_s: float = WINDOW_S, limit: int = LIMIT) -> None:
        if limit < 1:
            raise ValueError(f"an idempotency memory holds at least one outcome (limit={limit})")
        self.window_s, self.limit = window_s, limit
        self.forgotten = 0  # outcomes dropped by the limit before the window ended
        # Ordered oldest first. An OrderedDict, not a dict: a dict emptied from the front is
        # rescanned past its deleted slots on every next(iter()), 20-28 us per remember at the limit.
        self._outcomes: OrderedDict[str, tuple[float, Outcome]] = OrderedDict()

    def get(self, command_id: str) -> Outcome | None:
        held = self._outcomes.get(command_id)
        return held[1] if held is not None else None

    def remember(self, command_id: str, outcome: Outcome, at: float) -> None:
        """`at`: the result's time in seconds since the epoch (the record's timestamp)."""
        outcomes = self._outcomes
        outcomes[command_id] = (at, outcome)
        outcomes.move_to_end(command_id)  # re-remembered: it moves to the newest end
        if len(outcomes) > self.limit:
            while len(outcomes) > self.limit:
                outcomes.popitem(last=False)
                self.forgotten += 1
            if self.forgotten == 1:
                log.warning(
                    "an idempotency memory is full (%d outcomes, the last %.0fs of commands): from now "
                    "on its oldest are forgotten before the %.0fs window ends, and a retry of a "
                    "forgotten command is decided afresh (PROCESSOR_IDEMPOTENCY_MAX_COMMANDS sets the "
                    "limit; If-Match guards a retry)",
                    self.limit, at - outcomes[next(iter(outcomes))][0], self.window_s,
                )  # fmt: skip
        self.expire(at)

    def expire(self, now: float) -> None:
        """Forgets the outcomes whose window has passed by `now`."""
        outcomes, oldest_kept = self._outcomes, now - self.window_s
        while outcomes:
            command_id = next(iter(outcomes))
            if outcomes[command_id][0] >= oldest_kept:
                return
            outcomes.popitem(last=False)

    def __len__(self) -> int:
        return len(self._outcomes)

    def __contains__(self, command_id: object) -> bool:
        return command_id in self._outcomes
