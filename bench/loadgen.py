"""Open-loop load generator for the end-to-end latency test (and anything else that needs deposits
over HTTP on a schedule): request i leaves at start + i/rate whether or not earlier ones have
answered. Per request it records the HTTP answer latency of POST /accounts/{id}/deposits and the
visible-in-view latency: a GET /accounts/{id}?after=<position>&wait_ms=... sent right after the
answer returns once the view has applied the deposit (the query API waits on the projector's
change notifications; nothing polls). Both latencies are measured from the scheduled send time,
so a client or server falling behind shows as latency rather than as a lower rate.

Runs in its own process(es), apart from the services: `drive()` starts `procs` of them, each
sending every procs-th request of the schedule, and merges their samples.

  python -m bench.loadgen --commands URL --queries URL --accounts a,b,c --rate 100 --seconds 5
(BENCH_TOKEN in the environment: the bearer token)"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

WAIT_MS = 5000


@dataclass(frozen=True)
class Sample:
    at_s: float  # scheduled send, seconds from the start
    late_ms: float  # how late the request actually left (the client's own lag)
    answer_ms: float | None  # None: no 2xx answer
    visible_ms: float | None  # None: not visible within WAIT_MS (or no answer)


async def _one(
    session: aiohttp.ClientSession, commands: str, queries: str, account: str, due: float, start: float
) -> Sample:
    sent = time.perf_counter()
    answer_ms = visible_ms = None
    try:
        async with session.post(f"{commands}/accounts/{account}/deposits", json={"amount": 1}) as response:
            await response.read()
            position = response.headers.get("X-Position")
            ok = response.status < 300
        answered = time.perf_counter()
        if ok:
            answer_ms = (answered - due) * 1000
        if ok and position:
            params = {"after": position, "wait_ms": str(WAIT_MS)}
            async with session.get(f"{queries}/accounts/{account}", params=params) as view:
                await view.read()
                if view.status == 200:
                    visible_ms = (time.perf_counter() - due) * 1000
    except (aiohttp.ClientError, TimeoutError):
        pass
    return Sample(due - start, (sent - due) * 1000, answer_ms, visible_ms)


async def _drive(
    commands: str, queries: str, accounts: list[str], rate: float, seconds: float, part: int, parts: int,
    start_at: float,
) -> list[Sample]:  # fmt: skip
    token = os.environ["BENCH_TOKEN"]
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None)
    timeout = aiohttp.ClientTimeout(total=30)
    headers = {"authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as session:
        # start_at is wall-clock (shared by the processes); perf_counter from here on.
        start = time.perf_counter() + max(0.0, start_at - time.time())
        tasks = []
        total = int(rate * seconds)
        for i in range(part, total, parts):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(
                asyncio.create_task(_one(session, commands, queries, accounts[i % len(accounts)], due, start))
            )
        return list(await asyncio.gather(*tasks))


def start_delay_s(procs: int) -> float:
    """How long after drive() is called the schedule starts: time for the processes to start."""
    return 1.0 + 0.2 * procs


def drive(
    commands: str, queries: str, accounts: list[str], rate: float, seconds: float, procs: int, token: str,
    out_dir: Path,
) -> list[Sample]:  # fmt: skip
    """Runs `procs` load generator processes on one schedule; their samples, by scheduled time."""
    out_dir.mkdir(parents=True, exist_ok=True)
    start_at = time.time() + start_delay_s(procs)
    accounts_file = out_dir / "accounts.json"
    accounts_file.write_text(json.dumps(accounts))
    started = []
    for part in range(procs):
        out = out_dir / f"samples-{part}.json"
        command = [
            sys.executable, "-m", "bench.loadgen", "--commands", commands, "--queries", queries,
            "--accounts-file", str(accounts_file), "--rate", str(rate), "--seconds", str(seconds),
            "--part", str(part), "--parts", str(procs), "--start-at", str(start_at), "--out", str(out),
        ]  # fmt: skip
        started.append((subprocess.Popen(command, env={**os.environ, "BENCH_TOKEN": token}), out))
    samples: list[Sample] = []
    for process, out in started:
        if process.wait(seconds + 120) != 0:
            raise RuntimeError(f"the load generator exited with {process.returncode}")
        samples += [Sample(**s) for s in json.loads(out.read_text())]
    return sorted(samples, key=lambda s: s.at_s)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--commands", required=True, help="command API base URL")
    parser.add_argument("--queries", required=True, help="query API base URL")
    parser.add_argument("--accounts", default="", help="comma-separated account ids")
    parser.add_argument("--accounts-file", help="a JSON list of account ids")
    parser.add_argument("--rate", type=float, required=True, help="requests per second (all parts)")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--part", type=int, default=0)
    parser.add_argument("--parts", type=int, default=1)
    parser.add_argument("--start-at", type=float, default=0.0, help="wall-clock start (time.time())")
    parser.add_argument("--out", help="where to write the samples (JSON); default: stdout")
    args = parser.parse_args()
    accounts = (
        json.loads(Path(args.accounts_file).read_text()) if args.accounts_file else args.accounts.split(",")
    )
    samples = asyncio.run(
        _drive(
            args.commands,
            args.queries,
            accounts,
            args.rate,
            args.seconds,
            args.part,
            args.parts,
            args.start_at,
        )
    )
    text = json.dumps([s.__dict__ for s in samples])
    if args.out:
        Path(args.out).write_text(text)
    else:
        print(text)


def percentiles(values: list[float], points: tuple[float, ...] = (50, 95, 99)) -> dict[str, Any]:
    """Nearest-rank percentiles (None for an empty list)."""
    ordered = sorted(values)
    result: dict[str, Any] = {}
    for p in points:
        result[f"p{p:g}"] = (
            ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))] if ordered else None
        )
    return result


if __name__ == "__main__":
    main()
