"""HTTP command API: POST deposits at 64 connections from wrk (a separate process): req/s, p50, p99.

Usage: python bench/command_http.py [--seconds N] [--connections N]
Starts its own command API and command processor against the configured Kafka.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import RESULTS, bearer_token, bootstrap, unique, write, wrk
from infra.services import ServiceRunner, services
from infra.settings import StackSettings, TopicSettings
from infra.topics import ensure_topics

PORT = 18101
LUA = """
local ids = {%s}
local n = 0
request = function()
  n = n + 1
  local id = ids[(n %% #ids) + 1]
  return wrk.format("POST", "/accounts/" .. id .. "/deposits",
                    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer %s"},
                    '{"amount": 1}')
end
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    aggregate = unique("bench")  # private topics: the bench leaves no backlog for the real views
    ensure_topics(TopicSettings(kafka_bootstrap_servers=bootstrap(), aggregates=aggregate))
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap(),
        "COMMAND_API_PORT": str(PORT),
        "AGGREGATE": "account",
        "COMMAND_API_AGGREGATES": "account",
        "TOPIC_SUFFIX": aggregate,
        "PROCESSOR_GROUP_ID": f"command-processor.{aggregate}",
        "PROCESSOR_INSTANCE_ID": "bench",
    }
    runner = ServiceRunner(StackSettings(stack_dir=Path(".stack/bench")), env=env)
    wanted = [s for s in services(PORT, PORT + 1) if s.name in ("command-processor-account", "command-api")]
    try:
        for service in wanted:
            runner.start(service)
            runner.wait_healthy(service)
        base = f"http://127.0.0.1:{PORT}"
        token = bearer_token()
        with httpx.Client(base_url=base, timeout=30, headers={"authorization": f"Bearer {token}"}) as client:
            ids = [
                client.post("/accounts", json={"owner_id": "bench", "currency": "EUR"}).json()["account_id"]
                for _ in range(200)
            ]
        script = RESULTS / "deposits.lua"
        script.write_text(LUA % (", ".join(f'"{i}"' for i in ids), token))
        run = wrk(base, args.connections, args.seconds, script)
    finally:
        runner.stop_all(runner.started)
    (RESULTS / "command_http.wrk.txt").write_text(run.output)
    write(
        "command_http",
        [
            {
                "what": "POST /accounts/{id}/deposits (command API -> Kafka -> processor -> result)",
                "req/s": f"{run.rps:,.0f}",
                "p50 ms": f"{run.p50_ms:.1f}",
                "p99 ms": f"{run.p99_ms:.1f}",
                "non-2xx": run.non_2xx,
            },
        ],
        [
            f"wrk -t2 -c{args.connections} -d{args.seconds}s in a separate process, 200 accounts, "
            "1 uvicorn worker, "
            "1 command processor; wrk, the API, the processor and the broker share the 2 cores",
            "targets: >= 3k req/s, p99 <= 30 ms",
        ],
    )


if __name__ == "__main__":
    main()
