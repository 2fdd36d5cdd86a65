"""Query API reads: GET /accounts/{id} at 64 connections from wrk (a separate process), beside a
bare Starlette endpoint doing the same Redis read (bench/bare.py), in the same run, alternating
rounds; also the smallest FastAPI route doing the same read (the framework's floor, for context).
1,000 account summaries are seeded into the bench's own Redis database. Run by bench/report.py."""

from __future__ import annotations

import os
import statistics
import sys

import redis

from bench.common import (
    RESULTS,
    Figure,
    Mode,
    WrkRun,
    bearer_token,
    port,
    redis_url,
    service_runner,
    wait_answering,
    wrk,
)
from infra import processes
from infra.services import services

ACCOUNTS = 1000
DB = 15  # a database no test uses
CONNECTIONS = 64
LUA = """
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/accounts/bench-q-" .. (n %% %d), {["Authorization"] = "Bearer %s"})
end
"""


def seed(url: str) -> None:
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.set("view:accounts:current", 1)
    with client.pipeline(transaction=False) as pipe:
        for n in range(ACCOUNTS):
            account_id = f"bench-q-{n}"
            pipe.hset(
                f"view:accounts:g1:account:{account_id}",
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


def run(mode: Mode) -> tuple[list[Figure], list[str]]:
    url = redis_url(DB)
    seed(url)
    script = RESULTS / "query_reads.lua"
    script.write_text(LUA % (ACCOUNTS, bearer_token()))
    ports = {"ours": port(2), "bare": port(3), "floor": port(4)}
    runner = service_runner({"REDIS_URL": url, "QUERY_API_PORT": str(ports["ours"])})
    [query_api] = [s for s in services(query_port=ports["ours"]) if s.name == "query-api"]
    pid_dir = runner.dir
    pid_dir.mkdir(parents=True, exist_ok=True)
    pids = {app: pid_dir / f"bare-{app}.pid" for app in ("query_app", "fastapi_app")}
    runs: dict[str, list[WrkRun]] = {"bare": [], "floor": [], "ours": []}
    try:
        runner.start(query_api)
        for app, name in (("query_app", "bare"), ("fastapi_app", "floor")):
            command = [sys.executable, "-m", "uvicorn", f"bench.bare:{app}", "--port", str(ports[name])]
            processes.start_detached(
                [*command, "--no-access-log", "--log-level", "warning"],
                pid_file=pids[app],
                log_file=pids[app].with_suffix(".log"),
                markers=[f"bench.bare:{app}"],
                env={**os.environ, "REDIS_URL": url},
            )
        runner.wait_healthy(query_api)
        urls = {name: f"http://127.0.0.1:{p}" for name, p in ports.items()}
        token = bearer_token()
        for base in urls.values():
            wait_answering(f"{base}/accounts/bench-q-1", headers={"authorization": f"Bearer {token}"})
            wrk(base, CONNECTIONS, 1, script)  # warm-up
        for _ in range(mode.query_rounds):
            for name in ("bare", "floor", "ours"):
                runs[name].append(wrk(urls[name], CONNECTIONS, mode.wrk_seconds, script))
    finally:
        runner.stop_all(runner.started)
        for pid in pids.values():
            processes.stop(pid)
        redis.Redis.from_url(url).flushdb()
    (RESULTS / "query_http.wrk.txt").write_text("\n".join(r.output for rs in runs.values() for r in rs))
    rps = {name: statistics.median(r.rps for r in rs) for name, rs in runs.items()}
    p50 = {name: statistics.median(r.p50_ms for r in rs) for name, rs in runs.items()}
    p99 = {name: statistics.median(r.p99_ms for r in rs) for name, rs in runs.items()}
    bare = "bare Starlette endpoint, same Redis read, orjson"
    figures = [
        Figure("query GET", "req/s at 64 connections", rps["ours"], rps["bare"], bare,
               ">= 0.6x bare, >= 5k req/s", rps["ours"] >= 0.6 * rps["bare"] and rps["ours"] >= 5000),
        Figure("query GET", "p50 ms at 64 connections", p50["ours"], p50["bare"], bare, "", None, False),
        Figure("query GET", "p99 ms at 64 connections", p99["ours"], p99["bare"], bare, "", None, False),
        Figure("query GET", "req/s at 64 connections, smallest FastAPI route (context)", rps["floor"],
               rps["bare"], bare, "", None),
    ]  # fmt: skip
    errors = {name: sum(r.non_2xx + r.errors for r in rs) for name, rs in runs.items()}
    notes = [
        f"query GET: wrk -t2 -c{CONNECTIONS} -d{mode.wrk_seconds}s, {mode.query_rounds} alternating "
        f"round(s) (medians), {ACCOUNTS} accounts, 1 uvicorn worker each; non-2xx or socket errors: "
        + ", ".join(f"{n} {e}" for n, e in errors.items()),
    ]
    return figures, notes
