"""Keeps `cqrs run`'s children running: notices an exit, says why, restarts with backoff."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class Child(Protocol):
    """One supervised process (a service, Kafka, Redis, the gateway); the I/O is the adapter's."""

    @property
    def name(self) -> str: ...

    @property
    def log_file(self) -> Path: ...

    def pid(self) -> int | None:
        """The pid while it runs, else None."""

    def start(self) -> None:
        """Start it; may wait until it answers; raises if it cannot."""

    def exit_status(self) -> int | None:
        """Popen's returncode of the last exit (negative: a signal), None when not knowable."""

    def log_tail(self) -> list[str]:
        """The last lines of its log."""

    def healthy(self) -> bool:
        """Whether it answers its health check; with none: whether it runs."""


@dataclass(frozen=True)
class RestartPolicy:
    """Exponential backoff: `first_delay_s` doubling up to `max_delay_s` over exits in a row; a child
    that stayed up `stable_after_s` starts again from the first delay. Never gives up: a child that
    keeps exiting is retried at `max_delay_s` for as long as the run lasts."""

    first_delay_s: float = 1.0
    max_delay_s: float = 30.0
    stable_after_s: float = 60.0
    crash_loop_after: int = 3  # exits in a row from which it is called crash-looping

    def delay(self, exits_in_a_row: int) -> float:
        return float(min(self.first_delay_s * 2 ** max(0, exits_in_a_row - 1), self.max_delay_s))

    def crash_looping(self, exits_in_a_row: int) -> bool:
        return exits_in_a_row >= self.crash_loop_after


def describe_exit(status: int | None) -> str:
    if status is None:
        return "exit status unknown"
    if status >= 0:
        return f"exit code {status}"
    try:
        return f"killed by {signal.Signals(-status).name}"
    except ValueError:
        return f"killed by signal {-status}"


@dataclass
class _Watch:
    child: Child
    started_at: float
    exits_in_a_row: int = 0
    restart_at: float | None = None  # set while it is down and waiting for its restart
    reported_back: bool = True  # False after a restart, until it answers its health check


class Supervisor:
    """Call `tick()` every half second or so: it checks every child and restarts the ones due.
    Children are checked in the order given: put the servers first, the services after them."""

    def __init__(
        self,
        children: Sequence[Child],
        say: Callable[[str], None],
        policy: RestartPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        started_at: Mapping[str, float] | None = None,
    ) -> None:
        """`started_at`: when (on `clock`) each child was started, by name; default: now."""
        self.policy = policy or RestartPolicy()
        self.say = say
        self.clock = clock
        now, since = clock(), started_at or {}
        self._watches = [_Watch(child, started_at=since.get(child.name, now)) for child in children]

    def down(self) -> list[str]:
        """The children waiting for their restart."""
        return [w.child.name for w in self._watches if w.restart_at is not None]

    def tick(self) -> None:
        for watch in self._watches:
            if watch.restart_at is None:
                self._check(watch)
            elif self.clock() >= watch.restart_at:
                self._restart(watch)

    def _check(self, watch: _Watch) -> None:
        child = watch.child
        pid = child.pid()
        if pid is None:
            self._exited(watch, describe_exit(child.exit_status()), child.log_tail())
        elif not watch.reported_back and child.healthy():
            watch.reported_back = True
            up_s = self.clock() - watch.started_at
            self.say(f"{child.name} is back: pid {pid}, ready {up_s:.1f} s after its start")

    def _exited(self, watch: _Watch, how: str, tail: Sequence[str]) -> None:
        now = self.clock()
        up_s = now - watch.started_at
        if up_s >= self.policy.stable_after_s:
            watch.exits_in_a_row = 0
        watch.exits_in_a_row += 1
        delay = self.policy.delay(watch.exits_in_a_row)
        watch.restart_at = now + delay
        self.say(exit_message(watch.child, how, up_s, tail, delay, watch.exits_in_a_row, self.policy))

    def _restart(self, watch: _Watch) -> None:
        child = watch.child
        self.say(f"restarting {child.name} (restart {watch.exits_in_a_row} in a row)")
        watch.started_at = self.clock()
        watch.restart_at = None
        watch.reported_back = False
        try:
            child.start()
        except Exception as exc:  # whatever the start raised, it is one more exit; keep supervising
            if child.pid() is None:
                self._exited(watch, f"did not start: {exc}", child.log_tail())
            else:
                self.say(f"{child.name} runs (pid {child.pid()}) but did not answer: {exc}")


def exit_message(
    child: Child,
    how: str,
    up_s: float,
    tail: Sequence[str],
    delay_s: float,
    exits_in_a_row: int,
    policy: RestartPolicy,
) -> str:
    lines = [f"{child.name} exited ({how}) after {up_s:.1f} s"]
    if tail:
        lines.append(f"  last lines of {child.log_file}:")
        lines += [f"  | {line}" for line in tail]
    else:
        lines.append(f"  its log {child.log_file} has nothing")
    if policy.crash_looping(exits_in_a_row):
        lines.append(
            f"  {child.name} is crash-looping: {exits_in_a_row} exits in a row, each within "
            f"{policy.stable_after_s:.0f} s of its start; retried with backoff up to every "
            f"{policy.max_delay_s:.0f} s until it stays up or the run is stopped"
        )
    lines.append(f"  restarting it in {delay_s:.0f} s")
    return "\n".join(lines)
