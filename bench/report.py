"""The benchmark report: every figure beside its raw baseline measured in the same run, the ratio,
the design's target (PERFORMANCE.md) and whether it is met, the end-to-end latency per rate, and
plots. Writes bench/results/report.json, report.md, latency_vs_rate.png and latency_cdf.png.

  python -m bench.report --quick   # a smoke test of the harness: small sizes, ~1 minute
  python -m bench.report --full    # the figures (a few minutes)

Run under `cqrs exec` (make bench / make bench-quick): it needs the stack's settings and keys."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import traceback
from typing import Any

from bench.common import FULL, QUICK, RESULTS, Figure, Mode, machine, number, table

SECTIONS = ("ingestion", "projection", "query", "rebuild", "commands")


def _section(name: str, mode: Mode) -> tuple[list[Figure], list[str], Any]:
    if name == "ingestion":
        from bench import command_ingestion

        return (*command_ingestion.run(mode), None)
    if name == "projection":
        from bench import projection

        return (*projection.run(mode), None)
    if name == "query":
        from bench import query_http

        return (*query_http.run(mode), None)
    if name == "rebuild":
        from bench import rebuild

        return (*rebuild.run(mode), None)
    from bench import command_http

    return command_http.run(mode)


def plots(e2e: Any, when: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    rows = e2e.rows
    rates = [r["rate"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    for key, style in (("answer p50 ms", "b--o"), ("answer p99 ms", "b-o"),
                       ("visible p50 ms", "r--s"), ("visible p99 ms", "r-s")):  # fmt: skip
        ax.plot(rates, [r[key] if r[key] is not None else math.nan for r in rows], style, label=key[:-3])
    ax.set_xlabel("deposits per second (open loop)")
    ax.set_ylabel("latency from scheduled send, ms")
    ax.set_yscale("log")
    names.append(
        _save(fig, ax, "latency_vs_rate.png", f"HTTP deposit: answered and visible in the view ({when})")
    )

    # The distribution at the highest rate that did not saturate (else the lowest).
    fine = [r for r in rows if r["answered %"] >= 90 and r["visible %"] >= 90]
    rate = (fine[-1] if fine else rows[0])["rate"]
    samples = e2e.samples[rate]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    for label, values, colour in (
        ("answer", sorted(s.answer_ms for s in samples if s.answer_ms is not None), "b"),
        ("visible", sorted(s.visible_ms for s in samples if s.visible_ms is not None), "r"),
    ):
        if values:
            ax.plot(values, [(i + 1) / len(values) for i in range(len(values))], colour, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("latency from scheduled send, ms")
    ax.set_ylabel("fraction of requests")
    names.append(
        _save(fig, ax, "latency_cdf.png", f"latency CDF at {rate} deposits/s ({len(samples)} requests)")
    )
    return names


def _save(fig: Any, ax: Any, name: str, title: str) -> str:
    """Grid, legend and title as every plot has them; written to RESULTS/name, and closed."""
    import matplotlib.pyplot as plt

    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(RESULTS / name)
    plt.close(fig)
    return name


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"# Benchmark report ({report['mode']} mode, {report['when']})",
        "",
        f"- machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB memory, Linux {m['kernel']}",
        f"- software: Python {m['python']}, Apache Kafka {m['kafka']} (KRaft, one broker, SASL/SCRAM), "
        "Redis with ACL users, bearer tokens on every HTTP request",
        "- where: everything on this machine, no CPU pinning: the broker, Redis, the services under "
        "test, the baselines, wrk and the load generators share the cores, one at a time per "
        f"figure; load average at the start {', '.join(f'{x:.1f}' for x in m['load_average_at_start'])}, "
        f"at the end {', '.join(f'{x:.1f}' for x in report['load_average_at_end'])} (other work may run)",
        f"- took {report['seconds']:.0f} s ("
        + ", ".join(f"{n} {s:.0f} s" for n, s in report["section_seconds"].items())
        + "); ratios are ours / baseline from the same run "
        "(for latencies and seconds, lower is better)",
        "",
        "| figure | metric | ours | baseline | ratio | target | met | baseline is |",
        "|---|---|---:|---:|---:|---|---|---|",
    ]
    for f in report["figures"]:
        met = "—" if f["met"] is None else ("yes" if f["met"] else "**no**")
        lines.append(
            f"| {f['figure']} | {f['metric']} | {number(f['ours'])} | {number(f['baseline'])} | "
            f"{f['ratio']:.2f}x | {f['target'] or '—'} | {met} | {f['baseline_what']} |"
        )
    if report["e2e"]:
        lines += ["", "## End to end: HTTP deposit -> answered -> visible in the view (open loop)", ""]
        lines += table(report["e2e"], align="---:")
        lines += [""] + [f"![{p}]({p})" for p in report["plots"]]
    lines += ["", "## Notes", "", *[f"- {n}" for n in report["notes"]]]
    if report["failures"]:
        lines += ["", "## Failed sections", "", *[f"- {n}" for n in report["failures"]]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--quick", action="store_true", help="small sizes: checks the harness, not the figures"
    )
    which.add_argument("--full", action="store_true")
    parser.add_argument("--only", nargs="*", choices=SECTIONS, default=list(SECTIONS))
    args = parser.parse_args()
    mode = QUICK if args.quick else FULL
    RESULTS.mkdir(parents=True, exist_ok=True)
    for old in ("report.json", "report.md", "latency_vs_rate.png", "latency_cdf.png"):
        (RESULTS / old).unlink(missing_ok=True)
    began, when = time.monotonic(), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    facts = machine()
    figures: list[Figure] = []
    notes: list[str] = []
    failures: list[str] = []
    took: dict[str, float] = {}
    e2e = None
    for name in args.only:
        print(f"== {name} ({mode.name})", flush=True)
        step = time.monotonic()
        try:
            found, said, extra = _section(name, mode)
        except Exception as exc:
            traceback.print_exc()
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        figures += found
        notes += said
        e2e = extra if extra is not None else e2e
        for f in found:
            print(
                f"  {f.metric}: ours {f.ours:,.1f}, baseline {f.baseline:,.1f} ({f.ratio:.2f}x)", flush=True
            )
        took[name] = time.monotonic() - step
        print(f"  ({took[name]:.0f}s)", flush=True)
    report: dict[str, Any] = {
        "mode": mode.name,
        "when": when,
        "seconds": time.monotonic() - began,
        "section_seconds": took,
        "machine": facts,
        "load_average_at_end": os.getloadavg(),
        "figures": [f.row() for f in figures],
        "e2e": e2e.rows if e2e else [],
        "plots": plots(e2e, when) if e2e and e2e.rows else [],
        "notes": notes,
        "failures": failures,
    }
    (RESULTS / "report.json").write_text(json.dumps(report, indent=2))
    (RESULTS / "report.md").write_text(markdown(report))
    print(markdown(report))
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
