"""Soak: deposits at a fixed rate through the commands topic for a while, with the services'
resident memory sampled along the way (does any of them grow without end?).

Starts the five services of `make run` as processes on the configured stack, opens accounts,
then sends `--rate` deposits per second (open loop) for `--seconds`, sampling each service's RSS
every `--every` seconds. Writes bench/results/soak.json and .md: RSS per service at the start
(after a warm-up minute) and at the end, and the growth per event.

  STACK_DIR=.stack/soak KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:39092 REDIS_URL=redis://127.0.0.1:36379/0 \\
  COMMAND_API_PORT=38001 QUERY_API_PORT=38002 PROJECTOR_METRICS_PORT=38011 \\
  .venv/bin/cqrs exec -- .venv/bin/python bench/soak.py --seconds 600 --rate 200
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import RESULTS
from infra import processes
from infra.services import ServiceRunner, services
from infra.settings import StackSettings
from tests.support.kafka import Aggregate, CommandSender


def write(name: str, rows: list[dict[str, Any]], notes: list[str]) -> None:
    """bench/results/<name>.json and .md (a markdown table)."""
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


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=600)
    parser.add_argument("--rate", type=int, default=200, help="deposits per second")
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--every", type=int, default=30, help="seconds between RSS samples")
    parser.add_argument("--warmup", type=int, default=60, help="seconds of load before the first sample")
    args = parser.parse_args()

    ports = (int(os.environ["COMMAND_API_PORT"]), int(os.environ["QUERY_API_PORT"]),
             int(os.environ["PROJECTOR_METRICS_PORT"]))  # fmt: skip
    runner = ServiceRunner(StackSettings())
    started = services(*ports)
    for service in started:
        runner.start(service)
        runner.wait_healthy(service, timeout_s=180)
    try:
        sender = CommandSender(Aggregate("account", os.environ["KAFKA_BOOTSTRAP_SERVERS"], 12))
        accounts = [f"soak-{uuid.uuid4()}" for _ in range(args.accounts)]
        for account in accounts:
            sender.send("OpenAccount", account, {"owner_id": "soak", "currency": "EUR", "overdraft_limit": 0})
        sender.flush()
        pids = {s.name: processes.running_pid(runner.pid_file(s)) for s in started}
        samples: list[tuple[float, int, dict[str, float]]] = []
        began, sent = time.monotonic(), 0
        next_sample = began + args.warmup
        while (now := time.monotonic()) < began + args.warmup + args.seconds:
            due = int((now - began) * args.rate)
            for _ in range(due - sent):
                account = accounts[sent % len(accounts)]
                sender.send("DepositMoney", account, {"amount": 1, "reference": None, "channel": "soak"})
                sent += 1
            if now >= next_sample:
                sample = {name: rss_mb(pid) for name, pid in pids.items() if pid}
                samples.append((now - began, sent, sample))
                shown = "  ".join(f"{n} {v:.1f} MB" for n, v in sample.items())
                print(f"{now - began:6.0f}s {sent:8d} deposits  {shown}", flush=True)
                next_sample += args.every
            time.sleep(0.005)
        sender.flush()
    finally:
        runner.stop_all(started)
    (t0, n0, first), (t1, n1, last) = samples[0], samples[-1]
    rows = [
        {
            "service": name,
            f"RSS at {t0:.0f}s (MB)": f"{first[name]:.1f}",
            f"RSS at {t1:.0f}s (MB)": f"{last[name]:.1f}",
            "growth (MB)": f"{last[name] - first[name]:+.1f}",
            "bytes per deposit": f"{(last[name] - first[name]) * 1024 * 1024 / max(1, n1 - n0):+.0f}",
            "max (MB)": f"{max(s[name] for _, _, s in samples):.1f}",
        }
        for name in first
    ]
    write(
        "soak",
        rows,
        [
            f"{n1 - n0} deposits at {args.rate}/s over {t1 - t0:.0f}s through the commands topic "
            f"({args.accounts} accounts), after a {args.warmup}s warm-up; RSS sampled every {args.every}s",
            "samples: "
            + "; ".join(f"{t:.0f}s " + ",".join(f"{v:.0f}" for v in s.values()) for t, _, s in samples),
        ],
    )


if __name__ == "__main__":
    main()
