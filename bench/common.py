"""Shared bench plumbing: unique topics, writing results as JSON and a markdown table."""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def bootstrap() -> str:
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")


def bearer_token() -> str:
    """A staff token with every scope, signed with the stack's key (`cqrs exec` points the APIs it
    starts at that key's public half)."""
    from auth.local import PRIVATE, issue
    from auth.tokens import SCOPES

    public = os.environ.get("AUTH_PUBLIC_KEY_FILE")
    if not public:
        sys.exit("AUTH_PUBLIC_KEY_FILE is not set: run the benchmarks with `make bench` (cqrs exec)")
    return issue(Path(public).parent / PRIVATE, "bench", list(SCOPES), ttl_s=6 * 3600)


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def write(name: str, rows: list[dict[str, Any]], notes: list[str]) -> None:
    RESULTS.mkdir(exist_ok=True)
    meta = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    (RESULTS / f"{name}.json").write_text(json.dumps({"meta": meta, "rows": rows, "notes": notes}, indent=2))
    columns = list(rows[0])
    lines = [
        f"# {name} ({meta['when']}, {meta['cpus']} cpus)",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    lines += ["| " + " | ".join(str(r[c]) for c in columns) + " |" for r in rows]
    lines += ["", *[f"- {n}" for n in notes]]
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


@dataclass(frozen=True)
class WrkRun:
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    output: str


def _millis(text: str) -> float:
    value, unit = float(text.rstrip("mus")), text.lstrip("0123456789.")
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, connections: int, seconds: int, script: Path | None = None) -> WrkRun:
    """wrk (a separate process, 2 threads) against one URL, with its latency distribution."""
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")
    command = ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    command += ["-s", str(script)] if script else []
    out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return WrkRun(
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]),  # type: ignore[index]
        p50_ms=_millis(re.search(r"^\s+50%\s+(\S+)", out, re.M)[1]),  # type: ignore[index]
        p99_ms=_millis(re.search(r"^\s+99%\s+(\S+)", out, re.M)[1]),  # type: ignore[index]
        non_2xx=int(errors[1]) if errors else 0,
        output=out,
    )
