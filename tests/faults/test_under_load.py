"""The whole system under a steady load while its servers and its processes fail, on a private
stack: `cqrs run` supervises the services (as in `make run`), the test kills or pauses Kafka and
Redis (which `cqrs run` did not start, so the test alone brings them back), or SIGKILLs services in
a loop (which the supervisor restarts). After each fault the invariants of tests/faults/workload.py
hold, and the views equal a clean rebuild.

`make test` runs the cases marked `faults`; `make test-faults` runs these and the `full_faults` ones.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from infra import processes
from infra.kafka_broker import _port_open
from infra.redis_server import RedisServer
from tests.faults.conftest import OFFSET, PrivateStack
from tests.faults.workload import Load, Reads, Tally, check, open_accounts
from tests.support.tokens import bearer

pytestmark = pytest.mark.faults

STAFF = bearer()
GATEWAY_PORT = int(os.environ.get("GATEWAY_PORT", "18000")) + OFFSET
# Short enough that a paused broker outlasts them (the pause case is about exactly that).
SERVICE_SETTINGS = {
    "PROCESSOR_SESSION_TIMEOUT_MS": "6000",
    "PROCESSOR_TRANSACTION_TIMEOUT_MS": "10000",
    "TOPIC_PARTITIONS": "4",  # as the private stack's topics
}
REPORT: list[str] = []  # one line per case, printed at the end (the counts of the note)


def run_env(stack: PrivateStack) -> dict[str, str]:
    """`cqrs run`'s environment on the private stack (and the operator's, of this process)."""
    return {
        **os.environ,
        **stack.service_env(),
        **stack.operator_env(),  # REDIS_URL with the operator's user (service_env's has none)
        **SERVICE_SETTINGS,
        "GATEWAY_PORT": str(GATEWAY_PORT),
    }


@dataclass
class System:
    stack: PrivateStack
    run: subprocess.Popen[bytes]
    log: Path

    @property
    def command_url(self) -> str:
        return self.stack.command_url

    @property
    def query_url(self) -> str:
        return self.stack.query_url

    def env(self) -> dict[str, str]:
        return run_env(self.stack)

    def pid_file(self, service: str) -> Path:
        return self.stack.settings.stack_dir.resolve() / "services" / f"{service}.pid"

    def service_pid(self, service: str, within_s: float = 120) -> int:
        deadline = time.monotonic() + within_s
        while (pid := processes.running_pid(self.pid_file(service))) is None:
            assert time.monotonic() < deadline, f"{service} is not running: {self.tail()}"
            time.sleep(0.2)
        return pid

    def service_log(self, service: str) -> Path:
        return self.stack.settings.stack_dir.resolve() / "services" / "logs" / f"{service}.log"

    def log_size(self, service: str) -> int:
        path = self.service_log(service)
        return path.stat().st_size if path.exists() else 0

    def log_since(self, service: str, size: int) -> str:
        with open(self.service_log(service), "rb") as log:
            log.seek(size)
            return log.read().decode(errors="replace")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def wait_serving(self, within_s: float = 180) -> None:
        """The query API is ready (views caught up) and the command API answers."""
        deadline = time.monotonic() + within_s
        while True:
            assert self.run.poll() is None, f"cqrs run exited: {self.tail()}"
            try:
                ready = httpx.get(f"{self.query_url}/readyz", timeout=2).status_code == 200
                alive = httpx.get(f"{self.command_url}/healthz", timeout=2).status_code == 200
                if ready and alive:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"not serving after {within_s}s: {self.tail()}"
            time.sleep(0.5)

    def views_equal_a_rebuild(self) -> None:
        cli = Path(sys.executable).with_name("cqrs")
        for view in ("accounts", "statements"):
            verify = subprocess.run(
                [str(cli), "views", "verify", view, "--workers", "2", "--quiet"],
                env={**self.env(), "COLUMNS": "250"},
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert verify.returncode == 0 and "identical" in verify.stdout, verify.stdout + verify.stderr


@pytest.fixture(scope="module")
def system(private_stack: PrivateStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    log = tmp_path_factory.mktemp("cqrs-run") / "cqrs-run.log"
    cli = Path(sys.executable).with_name("cqrs")
    with open(log, "wb") as out:
        run = subprocess.Popen(
            [str(cli), "run"], stdout=out, stderr=subprocess.STDOUT, env=run_env(private_stack)
        )
    system = System(private_stack, run, log)
    try:
        system.wait_serving()
        yield system
    finally:
        run.send_signal(signal.SIGINT)
        try:
            run.wait(90)
        except subprocess.TimeoutExpired:
            run.kill()
            run.wait()
        print("\n" + "\n".join(REPORT))


# -- faults ---------------------------------------------------------------------------------------


def broker_killed(system: System) -> str:
    system.stack.kill_broker()
    time.sleep(10)
    took = system.stack.start_broker()
    return f"broker SIGKILLed, started again after 10 s (answering {took:.1f}s later)"


def broker_paused(system: System) -> str:
    system.stack.pause_broker()
    time.sleep(20)  # past the processor's session (6 s) and transaction (10 s) timeouts
    system.stack.resume_broker()
    return "broker SIGSTOPped for 20 s (session timeout 6 s, transaction timeout 10 s), then SIGCONTed"


def _kill_redis(system: System) -> RedisServer:
    """SIGKILL Redis; returns once it is gone and its port closed (a child it forked to rewrite its
    AOF holds the socket until that child ends)."""
    redis = RedisServer(system.stack.settings)
    pid = redis.pid()
    assert pid is not None, "Redis does not run"
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while redis.pid() is not None or _port_open(*system.stack.settings.redis_host_port):
        assert time.monotonic() < deadline, "Redis's port stays open after SIGKILL"
        time.sleep(0.05)
    return redis


def redis_killed(system: System) -> str:
    redis = _kill_redis(system)
    time.sleep(5)
    redis.start()
    return "Redis SIGKILLed, started again on its data after 5 s"


def redis_emptied(system: System) -> str:
    redis = _kill_redis(system)
    for entry in redis.home.iterdir():  # its data (the AOF folder); the ACL file is rewritten on start
        if entry.is_dir():
            shutil.rmtree(entry)
        elif entry.suffix in (".rdb", ".aof"):
            entry.unlink()
    redis.start()
    return "Redis SIGKILLed and started again with no data"


def kill_loop(service: str, kills: int = 3, every_s: float = 6) -> Callable[[System], str]:
    def fault(system: System) -> str:
        pids = [system.service_pid(service)]
        for _ in range(kills):
            os.kill(pids[-1], signal.SIGKILL)
            time.sleep(every_s)
            pids.append(system.service_pid(service))  # the supervisor's restart
        assert len(set(pids)) == kills + 1, f"{service} was not restarted after every kill: {pids}"
        return f"{service} SIGKILLed {kills} times, {every_s:.0f} s apart, restarted each time"

    fault.__name__ = f"kill_loop_{service}"
    return fault


SERVICES = (
    "query-api",
    "projector",
    "projector-transfers",
    "projector-statements",
    "transfer-process",
    "command-processor-account",
    "command-processor-transfer",
    "command-api",
)
# What proves that a fault hit what it claims: a client saw it (a kill loop also proves its kills
# by the new pid after each).
READS_FAILED = {"redis_killed", "redis_emptied", "kill_loop_query-api"}
COMMANDS_FAILED = {"broker_killed", "broker_paused", "kill_loop_command-api"}
PROCESSORS = ("command-processor-account", "command-processor-transfer")

FAST = [broker_killed, redis_killed, kill_loop("command-processor-account")]
FULL = [
    broker_paused,
    redis_emptied,
    kill_loop("command-api"),
    kill_loop("projector"),
    kill_loop("query-api"),
    kill_loop("transfer-process"),
]


def run_case(system: System, fault: Callable[[System], str], tag: str) -> Tally:
    accounts = open_accounts(system.command_url, STAFF, 8, tag)
    pids = {name: system.service_pid(name) for name in SERVICES}
    marks = {name: system.log_size(name) for name in PROCESSORS}
    with (
        Load(system.command_url, system.stack.bootstrap, STAFF, accounts, rate=40) as load,
        Reads(system.query_url, STAFF, accounts[0]) as reads,
    ):
        time.sleep(5)  # steady before the fault
        began = time.monotonic()
        what = fault(system)
        ended = time.monotonic()
        commands_back = load.wait_acked(20, after=ended, within_s=180)  # 20 fresh acknowledgments
        reads_back = reads.served_again(after=ended)
        time.sleep(5)  # steady after it
    system.wait_serving()
    # Each command processor holds its partitions again, however it lost them (the account's
    # acknowledgments above do not speak for the transfer's). A member whose rejoin never came is
    # replaced by its watchdog ("no partitions assigned ... rejoining"): counted in the report.
    replaced = 0
    for name in PROCESSORS:
        logged = system.log_since(name, marks[name])
        ownership = [
            line
            for line in logged.splitlines()
            if " INFO " in line and ("revoked partitions" in line or "assigned partitions" in line)
        ]
        assert not ownership or "assigned partitions" in ownership[-1], (
            f"{name} lost its partitions for good: {ownership}"
        )
        replaced += logged.count("no partitions assigned")
    tally = check(system.stack.bootstrap, load, system.query_url, STAFF)
    system.views_equal_a_rebuild()
    REPORT.append(
        tally.line(f"{fault.__name__} ({what}; fault lasted {ended - began:.1f}s)")
        + f"; reads during it: {dict(reads.seen)}; commands acknowledged again {commands_back:.1f}s and"
        f" reads served again {reads_back:.1f}s after the fault ended; group members replaced for want of an"
        f" assignment: {replaced}"
    )
    assert (tally.lost, tally.applied_twice) == (0, 0), tally
    if fault.__name__ in COMMANDS_FAILED:
        assert tally.failed_answers, "the fault never reached a command: it proved nothing"
    if fault.__name__ in READS_FAILED:
        assert reads.failed(), "the fault never reached a read: it proved nothing"
    if not fault.__name__.startswith("kill_loop"):  # the servers failed: no service needed a restart
        after = {name: system.service_pid(name) for name in SERVICES}
        assert after == pids, f"services restarted: {[n for n in SERVICES if after[n] != pids[n]]}"
    return tally


@pytest.mark.parametrize("fault", FAST, ids=lambda f: f.__name__)
def test_nothing_acknowledged_is_lost_or_doubled(
    system: System, fault: Callable[[System], str], unique: str
) -> None:
    run_case(system, fault, f"fault-{unique}")


@pytest.mark.full_faults
@pytest.mark.parametrize("fault", FULL, ids=lambda f: f.__name__)
def test_nothing_acknowledged_is_lost_or_doubled_full(
    system: System, fault: Callable[[System], str], unique: str
) -> None:
    run_case(system, fault, f"fault-{unique}")
