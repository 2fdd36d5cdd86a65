"""`cqrs run` keeps its children running: the real command as a subprocess on a stack of its own (its
own folder; ports: the session's + 300), whose service and Redis are killed with SIGKILL."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from infra import processes
from infra.settings import StackSettings

pytestmark = pytest.mark.faults

OFFSET = 300  # tests/faults/conftest.py's private stack uses the session's ports + 100
# Read at import: a package fixture (tests/faults/conftest.py) rewrites REDIS_URL while it is up.
SESSION = StackSettings(
    kafka_bootstrap_servers=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092"),
    redis_url=os.environ.get("REDIS_URL", "redis://127.0.0.1:16379/0"),
)
SESSION_PORTS = {
    name: int(os.environ.get(name, default))
    for name, default in (
        ("COMMAND_API_PORT", "18001"),
        ("QUERY_API_PORT", "18002"),
        ("PROJECTOR_METRICS_PORT", "18011"),
        ("GATEWAY_PORT", "18000"),
    )
}
# the session's credentials and keys are not this stack's: `cqrs run` makes its own
NOT_INHERITED = ("KAFKA_SASL_", "KAFKA_SECURITY_PROTOCOL", "AUTH_PUBLIC_KEY_FILE", "REDIS_URL")


@dataclass
class Run:
    process: subprocess.Popen[bytes]
    output: Path
    stack_dir: Path
    query_port: int
    gateway_port: int

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout_s: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while (found := re.search(pattern, self.text(), re.MULTILINE)) is None:
            assert self.process.poll() is None, f"cqrs run ended ({self.process.returncode}):\n{self.text()}"
            assert time.monotonic() < deadline, f"no {pattern!r} within {timeout_s:.0f}s:\n{self.text()}"
            time.sleep(0.2)
        return found

    def pid_file(self, name: str) -> Path:
        return {
            "kafka": self.stack_dir / "kafka" / "kafka.pid",
            "redis": self.stack_dir / "redis" / "redis.pid",
            "gateway": self.stack_dir / "gateway" / "gateway.pid",
        }.get(name, self.stack_dir / "services" / f"{name}.pid")

    def pid(self, name: str) -> int:
        pid = processes.running_pid(self.pid_file(name))
        assert pid is not None, f"{name} does not run"
        return pid

    def all_pids(self) -> set[int]:
        files = [
            *(self.stack_dir / "services").glob("*.pid"),
            *map(self.pid_file, ("kafka", "redis", "gateway")),
        ]
        return {pid for f in files if (pid := processes.running_pid(f)) is not None}

    def kill(self, name: str) -> int:
        pid = self.pid(name)
        os.kill(pid, signal.SIGKILL)
        return pid

    def wait_restarted(self, name: str, old_pid: int, timeout_s: float) -> int:
        self.wait_for(rf"^\S+ {name} exited \(killed by SIGKILL\) after", timeout_s=10)
        self.wait_for(rf"^\S+ {name} is back: pid \d+", timeout_s)
        pid = self.pid(name)
        assert pid != old_pid
        return pid


def members_of_groups(groups: set[int]) -> list[str]:
    """Processes in any of these process groups (start_detached makes one per child, id = its pid)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) in groups and fields[0] != "Z":
            found.append(f"{stat.parent.name} (group {fields[2]})")
    return found


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    kafka_port = SESSION.kafka_host_port[1] + OFFSET
    ports = {name: str(port + OFFSET) for name, port in SESSION_PORTS.items()}
    env = {k: v for k, v in os.environ.items() if not k.startswith(NOT_INHERITED)}
    env |= ports | {
        "STACK_DIR": str(tmp_path / "stack"),
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{kafka_port}",
        "KAFKA_CONTROLLER_PORT": str(kafka_port + 1),
        "REDIS_URL": f"redis://127.0.0.1:{SESSION.redis_host_port[1] + OFFSET}/0",
        "COLUMNS": "200",
    }
    cqrs = Path(sys.executable).parent / "cqrs"
    output = tmp_path / "cqrs-run.out"
    with open(output, "wb") as out:
        process = subprocess.Popen(
            [str(cqrs), "run"], stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    started = Run(
        process, output, tmp_path / "stack", int(ports["QUERY_API_PORT"]), int(ports["GATEWAY_PORT"])
    )
    try:
        yield started
    finally:
        if process.poll() is None:  # the test failed before its Ctrl-C: stop it as a user would
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            subprocess.run([str(cqrs), "stack", "down"], env=env, check=False, capture_output=True)


@pytest.mark.timeout(600)
def test_cqrs_run_restarts_what_dies_and_ctrl_c_stops_everything(run: Run) -> None:
    run.wait_for(r"^ready$", timeout_s=300)
    servers = {name: run.pid(name) for name in ("kafka", "redis")}

    # a service: restarted, and the servers are left alone
    processor = run.kill("command-processor-account")
    query_api = run.kill("query-api")
    run.wait_restarted("command-processor-account", processor, timeout_s=60)
    run.wait_restarted("query-api", query_api, timeout_s=60)
    with urllib.request.urlopen(f"http://127.0.0.1:{run.query_port}/healthz", timeout=5) as response:
        assert response.status == 200
    assert {name: run.pid(name) for name in servers} == servers
    said = run.text()
    assert "killed by SIGKILL" in said and "last lines of" in said and "restarting it in 1 s" in said

    # the gateway: a killed nginx master leaves its worker, which holds the port until it goes too
    gateway = run.kill("gateway")
    run.wait_restarted("gateway", gateway, timeout_s=30)
    with urllib.request.urlopen(f"http://127.0.0.1:{run.gateway_port}/healthz", timeout=5) as response:
        assert response.status == 200

    # a server it started: restarted on its data
    redis = run.kill("redis")
    run.wait_restarted("redis", redis, timeout_s=60)
    assert run.pid("kafka") == servers["kafka"]

    # Ctrl-C: everything it started is gone, and nothing they started is left behind
    ours = run.all_pids()
    run.process.send_signal(signal.SIGINT)
    run.process.wait(timeout=180)
    assert "stopped services and kafka, redis" in run.text()
    assert not members_of_groups(ours), run.text()
