"""Zero-downtime rebuilds and verification of a view, by generations.

A rebuild makes generation N+1 with its own consumer group (offsets set to the earliest, or to a
time), runs projector workers pinned to it while generation N keeps serving, and flips `current`
atomically once N+1 has reached the log's last events and is nowhere behind N. Following
projectors then restart into N+1 (they watch `current`), the workers hand over and stop, and after
a grace period N's keys and consumer group are removed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import redis

from schemas.topics import events_topic
from stream_processors.generations import GenerationInfo, Generations
from stream_processors.log_admin import LogAdmin
from stream_processors.recovery import group_id, next_generation, start_generation
from stream_processors.views.registry import view_spec


class RebuildFailed(Exception):
    pass


@dataclass(frozen=True)
class Progress:
    phase: str  # catching up | flipping | handing over | removing the old generation
    done: int  # events applied by the new generation
    total: int  # events it must apply before it may serve
    events_per_s: float

    @property
    def eta_s(self) -> float | None:
        if self.events_per_s <= 0:
            return None
        return max(0, self.total - self.done) / self.events_per_s


@dataclass(frozen=True)
class RebuildReport:
    view: str
    old: int
    new: int
    events: int
    seconds: float
    removed_keys: int
    note: str = ""

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class VerifyReport:
    view: str
    generation: int
    digest: str
    keys: int
    scratch_digest: str
    scratch_keys: int

    @property
    def equal(self) -> bool:
        return (self.digest, self.keys) == (self.scratch_digest, self.scratch_keys)


# A catch-up reads a backlog: bigger batches mean fewer Redis transactions per event.
CATCH_UP_ENV = {"PROJECTOR_BATCH_SIZE": "5000"}


class Workers:
    """Catch-up workers (stream_processors/catch_up.py) for one generation, children of this
    process, splitting the source partitions between them."""

    def __init__(
        self,
        view: str,
        generation: int,
        partitions: list[int],
        count: int,
        log_dir: Path,
        env: dict[str, str],
    ) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        shares = [[p for p in partitions if p % count == i] for i in range(count)]
        shares = [share for share in shares if share]
        self.logs = [log_dir / f"{view}-g{generation}-worker{i}.log" for i in range(len(shares))]
        self.processes: list[subprocess.Popen[bytes]] = []
        for log, share in zip(self.logs, shares, strict=True):
            worker_env = {
                **os.environ,
                **CATCH_UP_ENV,
                **env,
                "PROJECTOR_VIEW": view,
                "PROJECTOR_GENERATION": str(generation),
                "CATCH_UP_PARTITIONS": ",".join(map(str, share)),
            }
            with log.open("ab") as out:
                self.processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "stream_processors.catch_up"],
                        env=worker_env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,  # Ctrl-C reaches the CLI, which stops them in order
                    )
                )

    def check(self) -> None:
        for process, log in zip(self.processes, self.logs, strict=True):
            if process.poll() is not None:
                raise RebuildFailed(f"a rebuild worker exited with {process.returncode}; see {log}")

    def stop(self, timeout_s: float = 30) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)  # finishes its batch, then exits
        deadline = time.monotonic() + timeout_s
        for process in self.processes:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class Rebuilder:
    def __init__(
        self, view: str, *, redis_url: str, bootstrap: str, log_dir: Path, source: str | None = None
    ) -> None:
        self.spec = view_spec(view)
        self.view, self.source = self.spec.name, source or self.spec.source
        self.topic = events_topic(self.source)
        self.redis_url, self.bootstrap, self.log_dir = redis_url, bootstrap, log_dir
        self.client = redis.Redis.from_url(redis_url)
        self.gens = Generations(self.client, self.view)
        self.admin = LogAdmin(bootstrap)

    def _serving(self) -> int:
        current = self.gens.current()
        if current is None:
            raise RebuildFailed(
                f"the {self.view} view has no generation yet: start its projector (make run) to build one"
            )
        state = self.gens.info(current).state
        if state == "rebuilding":
            raise RebuildFailed(
                f"generation {current} of {self.view} is itself still being built (first start or "
                "recovery after Redis lost the view); wait until `cqrs views status` shows it live"
            )
        return current

    def _new_generation(
        self, reason: str, from_time: datetime | None, from_offsets: dict[int, int] | None = None
    ) -> tuple[int, dict[int, int]]:
        new = next_generation(self.gens, self.admin, self.source)
        earliest = self.admin.earliest(self.topic)
        if from_offsets is not None:
            start = {p: from_offsets.get(p, low) for p, low in earliest.items()}
        elif from_time is not None:
            start = self.admin.offsets_for_time(self.topic, from_time)
        else:
            start = earliest
        start_generation(self.gens, self.admin, self.source, new, reason, start)
        return new, start

    def _workers(self, generation: int, count: int, env: dict[str, str] | None) -> Workers:
        partitions = self.admin.partitions(self.topic)
        return Workers(
            self.view, generation, partitions, count, self.log_dir, {"AGGREGATE": self.source, **(env or {})}
        )

    def _catch_up(
        self,
        generation: int,
        start: dict[int, int],
        workers: Workers,
        on_progress: Callable[[Progress], None],
    ) -> tuple[GenerationInfo, int]:
        info = self.gens.info(generation)
        total = sum(max(0, target - start.get(p, 0) + 1) for p, target in info.targets.items())
        samples = [(time.monotonic(), 0)]
        while True:
            workers.check()
            info = self.gens.info(generation)
            done = sum(
                max(0, min(info.checkpoints.get(p, -1), target) - start.get(p, 0) + 1)
                for p, target in info.targets.items()
            )
            now = time.monotonic()
            samples = [s for s in samples if now - s[0] <= 5] + [(now, done)]
            rate = (done - samples[0][1]) / (now - samples[0][0]) if now > samples[0][0] else 0.0
            on_progress(Progress("catching up", done, total, rate))
            if not info.behind():
                return info, total
            time.sleep(0.5)

    def rebuild(
        self,
        *,
        from_time: datetime | None = None,
        from_offsets: dict[int, int] | None = None,
        reason: str | None = None,
        workers: int = 1,
        on_progress: Callable[[Progress], None] = lambda _: None,
        handover_timeout_s: float = 60,
        flip_timeout_s: float = 300,
        grace_s: float = 5,
        worker_env: dict[str, str] | None = None,
    ) -> RebuildReport:
        old = self._serving()
        began = time.monotonic()
        since = f" from {from_time.isoformat()}" if from_time else ""
        new, start = self._new_generation(
            reason or f"rebuild of generation {old}{since}", from_time, from_offsets
        )
        pool = self._workers(new, workers, worker_env)
        try:
            _, total = self._catch_up(new, start, pool, on_progress)
            deadline = time.monotonic() + flip_timeout_s
            while not self.gens.flip(new):  # the live generation moved on: follow it a little more
                pool.check()
                if time.monotonic() > deadline:
                    served, built = self.gens.checkpoints(old), self.gens.checkpoints(new)
                    ahead = {p: (o, built.get(p, -1)) for p, o in served.items() if o > built.get(p, -1)}
                    raise RebuildFailed(
                        f"generation {new} stays behind generation {old} (partition: (old, new)) {ahead}; "
                        f"generation {old} keeps serving"
                    )
                on_progress(Progress("flipping", total, total, 0.0))
                time.sleep(0.2)
            seconds = time.monotonic() - began
            on_progress(Progress("handing over", total, total, 0.0))
            note = self._hand_over(old, handover_timeout_s)
        except BaseException:  # failed or interrupted before the flip: the old generation serves on
            pool.stop()
            if self.gens.current() != new:
                self.gens.drop(new)
                self._delete_group(new)
            raise
        finally:
            pool.stop()
        on_progress(Progress("removing the old generation", total, total, 0.0))
        time.sleep(grace_s)  # a reader that read the pointer just before the flip finishes its read
        removed = self.gens.drop(old)
        self._delete_group(old)
        return RebuildReport(self.view, old, new, total, seconds, removed, note)

    def _hand_over(self, old: int, timeout_s: float) -> str:
        """Following projectors see the flip and restart into the new generation's group."""
        old_group = group_id(self.source, self.view, old)
        if not self.admin.members(old_group):
            return (
                f"no projector of {self.view} was running; the new generation stays current but is "
                "not updated until one starts (make run)"
            )
        deadline = time.monotonic() + timeout_s
        while self.admin.members(old_group):
            if time.monotonic() > deadline:
                return (
                    f"projectors still in {old_group} after {timeout_s:.0f}s: "
                    "are they pinned with PROJECTOR_GENERATION?"
                )
            time.sleep(0.5)
        # The workers keep applying until a following projector has joined the new group; it
        # resumes after the checkpoints they reached.
        new_group = group_id(self.source, self.view, self.gens.current() or 0)
        while not self.admin.members(new_group) and time.monotonic() < deadline:
            time.sleep(0.5)
        return ""

    def _delete_group(self, generation: int) -> None:
        group = group_id(self.source, self.view, generation)
        for _ in range(20):
            try:
                self.admin.delete_group(group)
                return
            except Exception:  # still has members or the coordinator is busy: try again shortly
                time.sleep(0.5)

    def verify(
        self,
        *,
        workers: int = 1,
        on_progress: Callable[[Progress], None] = lambda _: None,
        timeout_s: float = 600,
        worker_env: dict[str, str] | None = None,
    ) -> VerifyReport:
        """Rebuilds a scratch generation and compares its digest with the current one's, at a moment
        when both have applied exactly the same offsets."""
        current = self._serving()
        scratch, start = self._new_generation(f"verification scratch for generation {current}", None)
        pool = self._workers(scratch, workers, worker_env)
        deadline = time.monotonic() + timeout_s
        try:
            self._catch_up(scratch, start, pool, on_progress)
            while time.monotonic() < deadline:
                pool.check()
                served, built = self.gens.checkpoints(current), self.gens.checkpoints(scratch)
                if served == built:
                    digest, keys = self.gens.digest(current)
                    scratch_digest, scratch_keys = self.gens.digest(scratch)
                    if self.gens.checkpoints(current) == served:  # nothing moved while digesting
                        return VerifyReport(self.view, current, digest, keys, scratch_digest, scratch_keys)
                time.sleep(0.2)
            raise RebuildFailed("live writes kept the two generations apart; try again when quieter")
        finally:
            pool.stop()
            self.gens.drop(scratch)
            self._delete_group(scratch)
