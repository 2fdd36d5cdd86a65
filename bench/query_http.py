"""Query API reads: GET /accounts/{id} at 64 connections from wrk (a separate process), beside a
bare Starlette endpoint doing the same Redis reads (bench/bare_query.py), in the same run.

Usage: python bench/query_http.py [--seconds N] [--connections N] [--rounds N]
Seeds 1,000 account summaries into the live generation of the accounts view (ids bench-q-*), starts
the query API and the bare endpoint (1 uvicorn worker each) and alternates wrk runs between them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import urllib.request
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import RESULTS, WrkRun, bearer_token, write, wrk
from infra import processes
from infra.services import ServiceRunner, services
from infra.settings import StackSettings

QUERY_PORT, BARE_PORT, FLOOR_PORT = 18201, 18202, 18203
ACCOUNTS = 1000
LUA = """
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/accounts/bench-q-" .. (n %% %d), {["Authorization"] = "Bearer %s"})
end
"""


def seed(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.set("view:accounts:current", 1, nx=True)
    generation = int(client.get("view:accounts:current"))  # type: ignore[arg-type]
    with client.pipeline(transaction=False) as pipe:
        for n in range(ACCOUNTS):
            account_id = f"bench-q-{n}"
            pipe.hset(
                f"view:accounts:g{generation}:account:{account_id}",
                mapping={
                    "account_id": account_id,
                    "owner_id": "bench",
                    "currency": "EUR",
                    "balance": 1000 + n,
                    "overdraft_limit": 0,
                    "status": "open",
                    "version": 7,
                    "opened_at": "2026-11-26T00:00:00.000Z",
                    "updated_at": "2026-11-26T00:00:01.000Z",
                },
            )
        pipe.execute()


def unseed(redis_url: str) -> None:
    """The seeded rows are not in the log: remove them, or a rebuild's digest would differ."""
    client = redis.Redis.from_url(redis_url)
    generation = int(client.get("view:accounts:current") or 0)  # type: ignore[arg-type]
    client.delete(*[f"view:accounts:g{generation}:account:bench-q-{n}" for n in range(ACCOUNTS)])


def wait_answering(url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"{url} did not answer in {timeout_s:.0f}s")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:16379/0")
    seed(redis_url)
    RESULTS.mkdir(exist_ok=True)
    script = RESULTS / "query_reads.lua"
    script.write_text(LUA % (ACCOUNTS, bearer_token()))

    stack = StackSettings(stack_dir=Path(".stack/bench"))
    runner = ServiceRunner(stack, env={"REDIS_URL": redis_url, "QUERY_API_PORT": str(QUERY_PORT)})
    [query_api] = [s for s in services(query_port=QUERY_PORT) if s.name == "query-api"]
    pids = {
        app: stack.stack_dir.resolve() / "services" / f"bare-query-{app}.pid"
        for app in ("app", "fastapi_app")
    }
    runs: dict[str, list[WrkRun]] = {"bare": [], "floor": [], "ours": []}
    try:
        runner.start(query_api)
        runner.wait_healthy(query_api)
        for app, port in (("app", BARE_PORT), ("fastapi_app", FLOOR_PORT)):
            command = [sys.executable, "-m", "uvicorn", f"bench.bare_query:{app}", "--port", str(port)]
            processes.start_detached(
                [*command, "--no-access-log", "--log-level", "warning"],
                pid_file=pids[app],
                log_file=pids[app].with_suffix(".log"),
                markers=[f"bench.bare_query:{app}"],
                env={**os.environ, "REDIS_URL": redis_url},
            )
        urls = {
            "bare": f"http://127.0.0.1:{BARE_PORT}",
            "floor": f"http://127.0.0.1:{FLOOR_PORT}",
            "ours": f"http://127.0.0.1:{QUERY_PORT}",
        }
        for url in urls.values():
            wait_answering(f"{url}/accounts/bench-q-1")
            wrk(url, args.connections, 2, script)  # warm-up
        for _ in range(args.rounds):
            for name, url in urls.items():
                runs[name].append(wrk(url, args.connections, args.seconds, script))
    finally:
        runner.stop_all(runner.started)
        for pid in pids.values():
            processes.stop(pid)
        unseed(redis_url)
    (RESULTS / "query_http.wrk.txt").write_text("\n".join(r.output for rs in runs.values() for r in rs))

    def summary(name: str, what: str) -> dict[str, str]:
        rs = runs[name]
        return {
            "what": what,
            "req/s (median)": f"{statistics.median(r.rps for r in rs):,.0f}",
            "req/s (runs)": " / ".join(f"{r.rps:,.0f}" for r in rs),
            "p50 ms": f"{statistics.median(r.p50_ms for r in rs):.1f}",
            "p99 ms": f"{statistics.median(r.p99_ms for r in rs):.1f}",
            "non-2xx": str(sum(r.non_2xx for r in rs)),
        }

    def ratio(name: str) -> str:
        median = {n: statistics.median(r.rps for r in rs) for n, rs in runs.items()}
        return f"{median[name] / median['bare']:.2f}x"

    write(
        "query_http",
        [
            summary("bare", "bare Starlette endpoint, same Redis reads (raw)"),
            summary("floor", "smallest FastAPI route, same read (context: the framework's floor)"),
            summary("ours", "query API GET /accounts/{id}"),
            {
                "what": "floor / raw",
                "req/s (median)": ratio("floor"),
                "req/s (runs)": "",
                "p50 ms": "",
                "p99 ms": "",
                "non-2xx": "",
            },
            {
                "what": "ours / raw",
                "req/s (median)": ratio("ours"),
                "req/s (runs)": "",
                "p50 ms": "",
                "p99 ms": "",
                "non-2xx": "",
            },
        ],
        [
            f"wrk -t2 -c{args.connections} -d{args.seconds}s, {args.rounds} alternating rounds, "
            f"{ACCOUNTS} accounts; 1 uvicorn worker each; wrk, the API under test and Redis share "
            "the 2 cores (the other APIs idle; the Kafka broker of the test stack idles too)",
            "targets: >= 0.6x the bare endpoint and >= 5k req/s",
        ],
    )


if __name__ == "__main__":
    main()
