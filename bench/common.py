"""Shared bench plumbing: the stack's settings as the bench sees them (Kafka with SASL, Redis with
its ACL user, a bearer token), ports for the bench's own services, wrk, and the figure rows every
benchmark returns to bench/report.py."""

from __future__ import annotations

import math
import os
import platform
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from infra.services import ServiceRunner
from infra.settings import StackSettings
from schemas.kafka_security import kafka_config

# Where the report, the logs and the wrk output go (BENCH_RESULTS: elsewhere, e.g. the smoke test's).
RESULTS = Path(os.environ.get("BENCH_RESULTS") or Path(__file__).parent / "results")


@dataclass(frozen=True)
class Mode:
    """How much each benchmark does: quick (a smoke test of the harness) or full."""

    name: str
    commands: int  # command ingestion
    events: int  # live projection
    rebuild_events: int
    wrk_seconds: int
    query_rounds: int
    rates: tuple[int, ...]  # end to end, commands per second
    rate_seconds: float
    partitions: int  # of every topic the bench creates

    @property
    def quick(self) -> bool:
        return self.name == "quick"


QUICK = Mode("quick", 3_000, 6_000, 5_000, 2, 1, (100,), 3, 4)
FULL = Mode("full", 50_000, 60_000, 1_000_000, 6, 2, (100, 300, 600, 1000, 1500), 10, 12)


@dataclass(frozen=True)
class Figure:
    """One row of the report: ours beside the raw baseline measured in the same run."""

    figure: str  # which benchmark
    metric: str  # what is measured, with its unit
    ours: float
    baseline: float
    baseline_what: str
    target: str  # the design's target (PERFORMANCE.md), "" when the design sets none
    met: bool | None  # None: no target
    higher_is_better: bool = True

    @property
    def ratio(self) -> float:
        return self.ours / self.baseline if self.baseline else math.nan

    def row(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}


def bootstrap() -> str:
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")


def kafka(**extra: Any) -> dict[str, Any]:
    """A confluent-kafka configuration for the stack: servers, SASL from the environment, extras."""
    return kafka_config(bootstrap(), **extra)


def redis_url(db: int) -> str:
    """The stack's Redis (with the ACL user `cqrs exec` exports) on database `db`."""
    base = os.environ.get("REDIS_URL", "redis://127.0.0.1:16379/0").rsplit("/", 1)[0]
    return f"{base}/{db}"


def port(offset: int) -> int:
    """A port for one of the bench's own servers: COMMAND_API_PORT + 500 + offset, so two stacks
    (each with its own ports) never share one (the fault suite's private stacks use + 100 and + 300)."""
    return int(os.environ.get("COMMAND_API_PORT", "8001")) + 500 + offset


def stack_settings() -> StackSettings:
    return StackSettings()


def service_runner(env: dict[str, str]) -> ServiceRunner:
    """Runs services (as the operator `cqrs exec` acts as) with pid files and logs under
    <STACK_DIR>/bench, apart from the stack's own services."""
    return ServiceRunner(StackSettings(stack_dir=stack_settings().stack_dir / "bench"), env=env)


def bearer_token() -> str:
    """A staff token with every scope, signed with the stack's key (`cqrs exec` points the APIs it
    starts at that key's public half)."""
    from auth.local import PRIVATE, issue
    from auth.tokens import SCOPES

    public = os.environ.get("AUTH_PUBLIC_KEY_FILE")
    if not public:
        sys.exit("AUTH_PUBLIC_KEY_FILE is not set: run the benchmarks with `make bench` (cqrs exec)")
    return issue(Path(public).parent / PRIVATE, "bench", list(SCOPES), ttl_s=6 * 3600)


def number(value: float | None, digits: int = 1) -> str:
    """A figure in a markdown table: thousands separated, `digits` decimals below 100, — for none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.{digits}f}"


def table(rows: list[dict[str, Any]], align: str = "---") -> list[str]:
    """A markdown table of rows with the same keys; numbers by `number`, anything else as text."""
    columns = list(rows[0])

    def cell(value: Any) -> str:
        return number(value) if isinstance(value, int | float) and not isinstance(value, bool) else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + f"{align}|" * len(columns)]
    return lines + ["| " + " | ".join(cell(r[c]) for c in columns) + " |" for r in rows]


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_answering(url: str, timeout_s: float = 60, headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            request = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(request, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer in {timeout_s:.0f}s")


def machine() -> dict[str, Any]:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor() or "?",
    )  # fmt: skip
    meminfo = Path("/proc/meminfo").read_text()
    memory_kb = int(re.search(r"MemTotal:\s+(\d+)", meminfo)[1])  # type: ignore[index]
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(memory_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "kafka": stack_settings().kafka_version,
        "load_average_at_start": os.getloadavg(),
        "kernel": platform.release(),
    }


@dataclass(frozen=True)
class WrkRun:
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    errors: int
    output: str


def _millis(text: str) -> float:
    value, unit = float(text.rstrip("mus")), text.lstrip("0123456789.")
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk_program() -> str:
    """wrk from Debian, installed with apt when missing (as root)."""
    from infra.debian import ensure_program

    return ensure_program(("wrk",), ("wrk",), "wrk is needed by the benchmarks: apt-get install wrk")


def wrk(url: str, connections: int, seconds: int, script: Path | None = None) -> WrkRun:
    """wrk (a separate process, up to 2 threads) against one URL, with its latency distribution."""
    command = [wrk_program(), f"-t{min(2, connections)}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    command += ["-s", str(script)] if script else []
    out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return WrkRun(
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]),  # type: ignore[index]
        p50_ms=_millis(re.search(r"^\s+50%\s+(\S+)", out, re.M)[1]),  # type: ignore[index]
        p99_ms=_millis(re.search(r"^\s+99%\s+(\S+)", out, re.M)[1]),  # type: ignore[index]
        non_2xx=int(non_2xx[1]) if non_2xx else 0,
        errors=sum(int(n) for n in errors.groups()) if errors else 0,
        output=out,
    )
