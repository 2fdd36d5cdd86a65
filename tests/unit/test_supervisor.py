"""The restart policy of `cqrs run` on a fake clock and fake children: no processes."""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from infra.supervisor import RestartPolicy, Supervisor, describe_exit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeChild:
    name: str = "command-processor-account"
    log_file: Path = Path("/stack/services/logs/command-processor-account.log")
    running: int | None = 100
    status: int | None = None
    tail: list[str] = field(default_factory=lambda: ["Traceback (most recent call last):", "boom"])
    answers: bool = True
    start_error: Exception | None = None
    starts: int = 0

    def pid(self) -> int | None:
        return self.running

    def start(self) -> None:
        self.starts += 1
        if self.start_error is not None:
            raise self.start_error
        self.running = 100 + self.starts

    def exit_status(self) -> int | None:
        return self.status

    def log_tail(self) -> list[str]:
        return self.tail

    def healthy(self) -> bool:
        return self.answers

    def crash(self, status: int | None = -signal.SIGKILL) -> None:
        self.running, self.status = None, status


def supervised(*children: FakeChild) -> tuple[Supervisor, Clock, list[str]]:
    clock, said = Clock(), []
    return Supervisor(children, say=said.append, clock=clock), clock, said


def delays_of(said: list[str]) -> list[str]:
    return [line.strip() for message in said for line in message.splitlines() if "restarting it in" in line]


def test_the_delay_doubles_from_one_second_up_to_the_cap() -> None:
    policy = RestartPolicy()
    assert [policy.delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 30, 30, 30]
    assert RestartPolicy(first_delay_s=0.5, max_delay_s=3).delay(4) == 3


@pytest.mark.parametrize(
    ("status", "described"),
    [
        (0, "exit code 0"),
        (3, "exit code 3"),
        (-signal.SIGKILL, "killed by SIGKILL"),
        (-signal.SIGSEGV, "killed by SIGSEGV"),
        (-99, "killed by signal 99"),
        (None, "exit status unknown"),
    ],
)
def test_how_it_exited_is_described(status: int | None, described: str) -> None:
    assert describe_exit(status) == described


def test_an_exit_is_reported_with_its_status_log_tail_and_restart_time() -> None:
    child = FakeChild()
    supervisor, clock, said = supervised(child)
    clock.now += 12.5
    child.crash()
    supervisor.tick()
    assert said == [
        "command-processor-account exited (killed by SIGKILL) after 12.5 s\n"
        "  last lines of /stack/services/logs/command-processor-account.log:\n"
        "  | Traceback (most recent call last):\n"
        "  | boom\n"
        "  restarting it in 1 s"
    ]
    assert supervisor.down() == ["command-processor-account"]


def test_it_restarts_when_the_delay_is_over_and_says_when_it_is_back() -> None:
    child = FakeChild(answers=False)
    supervisor, clock, said = supervised(child)
    child.crash(status=1)
    supervisor.tick()
    clock.now += 0.9
    supervisor.tick()
    assert child.starts == 0
    clock.now += 0.1
    supervisor.tick()
    assert child.starts == 1
    assert said[-1] == "restarting command-processor-account (restart 1 in a row)"
    assert supervisor.down() == []
    clock.now += 3
    supervisor.tick()  # runs, not healthy yet: nothing to say
    assert len(said) == 2
    child.answers = True
    supervisor.tick()
    supervisor.tick()
    assert said[2:] == ["command-processor-account is back: pid 101, ready 3.0 s after its start"]


def crash_and_restart(supervisor: Supervisor, clock: Clock, child: FakeChild, up_s: float) -> None:
    clock.now += up_s
    child.crash()
    supervisor.tick()
    clock.now += 30
    supervisor.tick()


def test_quick_exits_in_a_row_back_off_to_the_cap_and_it_never_gives_up() -> None:
    child = FakeChild()
    supervisor, clock, said = supervised(child)
    for _ in range(12):
        crash_and_restart(supervisor, clock, child, up_s=5)
    assert child.starts == 12
    assert delays_of(said) == [
        f"restarting it in {s} s" for s in (1, 2, 4, 8, 16, 30, 30, 30, 30, 30, 30, 30)
    ]


def test_from_the_third_quick_exit_on_it_is_called_crash_looping() -> None:
    child = FakeChild()
    supervisor, clock, said = supervised(child)
    for _ in range(3):
        crash_and_restart(supervisor, clock, child, up_s=5)
    exits = [m for m in said if "exited" in m]
    assert ["crash-looping" in m for m in exits] == [False, False, True]
    assert (
        "command-processor-account is crash-looping: 3 exits in a row, each within 60 s of its start; "
        "retried with backoff up to every 30 s until it stays up or the run is stopped"
    ) in exits[2]


def test_staying_up_for_a_while_starts_the_backoff_again() -> None:
    child = FakeChild()
    supervisor, clock, said = supervised(child)
    for _ in range(4):
        crash_and_restart(supervisor, clock, child, up_s=5)
    crash_and_restart(supervisor, clock, child, up_s=59)  # not long enough
    crash_and_restart(supervisor, clock, child, up_s=60)
    crash_and_restart(supervisor, clock, child, up_s=1)
    assert delays_of(said) == [f"restarting it in {s} s" for s in (1, 2, 4, 8, 16, 1, 2)]
    assert "crash-looping" not in said[-2]


def test_a_start_that_fails_counts_as_one_more_exit() -> None:
    child = FakeChild()
    supervisor, clock, said = supervised(child)
    child.crash()
    child.start_error = RuntimeError("127.0.0.1:16379 is taken by a process this stack did not start")
    supervisor.tick()
    clock.now += 1
    supervisor.tick()
    assert child.starts == 1
    assert said[-1].startswith(
        "command-processor-account exited (did not start: 127.0.0.1:16379 is taken by a process this "
        "stack did not start) after 0.0 s"
    )
    assert said[-1].endswith("restarting it in 2 s")
    child.start_error = None
    clock.now += 2
    supervisor.tick()
    assert child.pid() == 102


def test_a_start_that_leaves_it_running_is_not_an_exit() -> None:
    """E.g. Kafka that runs but has not answered within its start's timeout: watched as running."""
    child = FakeChild()
    supervisor, clock, said = supervised(child)
    child.crash()
    supervisor.tick()
    child.start_error = RuntimeError("Kafka did not answer metadata")
    child.running = 555
    clock.now += 1
    supervisor.tick()
    assert said[-1] == (
        "command-processor-account runs (pid 555) but did not answer: Kafka did not answer metadata"
    )
    assert supervisor.down() == []


def test_each_child_has_its_own_backoff_and_no_log_is_said_so() -> None:
    redis = FakeChild(name="redis", log_file=Path("/stack/redis/redis.log"), tail=[])
    service = FakeChild()
    supervisor, clock, said = supervised(redis, service)
    for _ in range(3):
        crash_and_restart(supervisor, clock, service, up_s=1)
    redis.crash(status=None)
    supervisor.tick()
    assert said[-2:] == [
        "redis exited (exit status unknown) after 93.0 s\n"
        "  its log /stack/redis/redis.log has nothing\n"
        "  restarting it in 1 s",
        "command-processor-account is back: pid 103, ready 0.0 s after its start",
    ]


def test_the_time_up_counts_from_the_childs_own_start() -> None:
    child = FakeChild()
    clock, said = Clock(), []
    supervisor = Supervisor([child], say=said.append, clock=clock, started_at={child.name: clock.now - 40})
    clock.now += 25
    child.crash(status=1)
    supervisor.tick()
    assert said[0].startswith("command-processor-account exited (exit code 1) after 65.0 s")
    assert said[0].endswith("restarting it in 1 s")
