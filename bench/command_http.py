"""The command side over HTTP, and the end-to-end latency test, on one private chain of services:
command API -> commands.<agg> -> command processor -> events.<agg> -> projector -> Redis (the
bench's database) -> query API, each one process, on ports derived from the stack's.

1. HTTP commands: POST /accounts/{id}/deposits from wrk (a separate process) at 64 connections and
   at 1, beside the raw baseline `bench.bare:command_app` (encode, produce with acks=all, answer).
2. End to end: bench/loadgen.py (separate processes) sends deposits open-loop at stepped rates and
   measures per request the answer latency and the visible-in-view latency (an ?after= read).
The chain is bench/chain.py. Run by bench/report.py."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from bench import chain, loadgen
from bench.common import (
    RESULTS,
    Figure,
    Mode,
    WrkRun,
    bearer_token,
    kafka,
    port,
    unique,
    wait_answering,
    wrk,
)
from infra import processes

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


@dataclass
class E2E:
    rows: list[dict[str, Any]]  # one per rate
    samples: dict[int, list[loadgen.Sample]]  # by rate


def e2e_row(rate: int, seconds: float, samples: list[loadgen.Sample]) -> dict[str, Any]:
    answered = [s.answer_ms for s in samples if s.answer_ms is not None]
    visible = [s.visible_ms for s in samples if s.visible_ms is not None]
    a, v = loadgen.percentiles(answered), loadgen.percentiles(visible)
    late = loadgen.percentiles([s.late_ms for s in samples], (99,))
    return {
        "rate": rate,
        "sent": len(samples),
        "answered/s": len(answered) / seconds,
        "answered %": 100 * len(answered) / max(1, len(samples)),
        "visible %": 100 * len(visible) / max(1, len(samples)),
        "answer p50 ms": a["p50"],
        "answer p95 ms": a["p95"],
        "answer p99 ms": a["p99"],
        "visible p50 ms": v["p50"],
        "visible p95 ms": v["p95"],
        "visible p99 ms": v["p99"],
        "client late p99 ms": late["p99"],
    }


def _saturated(row: dict[str, Any]) -> bool:
    """The chain no longer keeps up: answers fall short of the rate, or deposits stop becoming
    visible within the wait (latency alone keeps growing with the rate and is what is plotted)."""
    return bool(row["answered/s"] < 0.9 * row["rate"] or row["answered %"] < 90 or row["visible %"] < 90)


def run(mode: Mode) -> tuple[list[Figure], list[str], E2E]:
    token = bearer_token()
    raw_topic = unique("bench.rawcmd.")
    admin = AdminClient(kafka())
    admin.create_topics([NewTopic(raw_topic, mode.partitions, 1)])[raw_topic].result()
    bare_port = port(13)
    bare = f"http://127.0.0.1:{bare_port}"
    runs: dict[str, WrkRun] = {}
    e2e = E2E([], {})
    with chain.running(token, 50 if mode.quick else 200, mode.partitions) as running:
        bare_pid = running.runner.dir / "bare-command_app.pid"
        commands, queries, accounts = running.commands, running.queries, running.accounts
        try:
            processes.start_detached(
                [sys.executable, "-m", "uvicorn", "bench.bare:command_app", "--port", str(bare_port),
                 "--no-access-log", "--log-level", "warning"],
                pid_file=bare_pid,
                log_file=bare_pid.with_suffix(".log"),
                markers=["bench.bare:command_app"],
                env={**os.environ, "BENCH_TOPIC": raw_topic},
            )  # fmt: skip
            wait_answering(f"{bare}/healthz", timeout_s=60)
            script = RESULTS / "deposits.lua"
            script.write_text(LUA % (", ".join(f'"{i}"' for i in accounts), token))
            wrk(commands, 8, 1 if mode.quick else 3, script)  # warm-up
            wrk(bare, 8, 1, script)
            for connections in (64, 1):
                runs[f"ours{connections}"] = wrk(commands, connections, mode.wrk_seconds, script)
                runs[f"bare{connections}"] = wrk(bare, connections, mode.wrk_seconds, script)
        finally:
            processes.stop(bare_pid)
            admin.delete_topics([raw_topic])
        # The wrk deposits are a backlog for the projector: let it catch up before timing the view.
        last, position = chain.open_accounts(commands, token, 1)
        chain.wait_visible(queries, token, last[0], position, within_s=300)
        for rate in mode.rates:
            samples = loadgen.drive(
                commands, queries, accounts, rate, mode.rate_seconds, 1 if rate < 500 else 2, token,
                RESULTS / "loadgen",
            )  # fmt: skip
            row = e2e_row(rate, mode.rate_seconds, samples)
            e2e.rows.append(row)
            e2e.samples[rate] = samples
            print(
                f"  e2e {rate}/s: " + ", ".join(f"{k} {v:.0f}" for k, v in row.items() if v is not None),
                flush=True,
            )
            if _saturated(row):
                break
            time.sleep(1)  # let the queues drain between steps
    (RESULTS / "command_http.wrk.txt").write_text("\n".join(r.output for r in runs.values()))

    raw_what = "bare Starlette endpoint: encode, produce (acks=all), answer on delivery"
    figures = []
    for c in (64, 1):
        ours, raw = runs[f"ours{c}"], runs[f"bare{c}"]
        rps_target = ">= 3k req/s" if c == 64 else ""
        p99_target = "<= 30 ms" if c == 64 else ""
        what = raw_what
        figures += [
            Figure("HTTP commands", f"req/s at {c} connection(s)", ours.rps, raw.rps, what, rps_target,
                   ours.rps >= 3000 if c == 64 else None),
            Figure("HTTP commands", f"p50 ms at {c} connection(s)", ours.p50_ms, raw.p50_ms, what, "", None,
                   False),
            Figure("HTTP commands", f"p99 ms at {c} connection(s)", ours.p99_ms, raw.p99_ms, what, p99_target,
                   ours.p99_ms <= 30 if c == 64 else None, False),
        ]  # fmt: skip
    # End to end: the step nearest 1k/s (the design's target rate) that was run.
    at = min(e2e.rows, key=lambda r: abs(r["rate"] - 1000))
    answer_what = "HTTP answer (accepted) at the same rate"
    figures += [
        Figure("end to end", f"visible p50 ms at {at['rate']}/s", at["visible p50 ms"], at["answer p50 ms"],
               answer_what, "<= 10 ms at 1k/s", at["rate"] >= 1000 and at["visible p50 ms"] <= 10, False),
        Figure("end to end", f"visible p99 ms at {at['rate']}/s", at["visible p99 ms"], at["answer p99 ms"],
               answer_what, "<= 50 ms at 1k/s", at["rate"] >= 1000 and at["visible p99 ms"] <= 50, False),
    ]  # fmt: skip
    errors = {name: r.non_2xx + r.errors for name, r in runs.items()}
    notes = [
        f"HTTP commands: wrk -t2 -c64 and -t1 -c1, {mode.wrk_seconds}s each, {len(accounts)} accounts; one "
        "command API worker, one processor; non-2xx or socket errors: "
        + ", ".join(f"{n} {e}" for n, e in errors.items()),
        f"end to end: deposits open-loop at {', '.join(str(r['rate']) for r in e2e.rows)}/s, "
        f"{mode.rate_seconds:g}s per step, from bench/loadgen.py (aiohttp, 1 process below 500/s, 2 "
        "above); latencies from the scheduled send; visible = an ?after=<position> read sent right after "
        "the answer; the steps stop once fewer than 90% answer or become visible within 5 s, or the "
        "answers fall below 0.9x the rate",
    ]
    return figures, notes, e2e
