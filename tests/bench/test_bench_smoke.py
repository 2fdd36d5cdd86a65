"""The benchmark harness end to end in its quick mode (`make bench-quick`): every section runs
against the real stack and the report is complete. No timing is asserted: the figures of a quick
run on a shared machine mean nothing; that the harness still produces them does."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Stack

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"


def _filled(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@pytest.mark.timeout(600)
def test_the_quick_report_has_every_figure_and_plot(stack: Stack, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.report", "--quick"],
        cwd=ROOT,
        env={**os.environ, "BENCH_RESULTS": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]

    report = json.loads((tmp_path / "report.json").read_text())
    assert report["mode"] == "quick" and report["failures"] == []
    figures = {f["figure"] for f in report["figures"]}
    assert figures == {
        "command ingestion", "live projection", "query GET", "rebuild", "HTTP commands", "end to end",
    }  # fmt: skip
    for row in report["figures"]:
        assert all(_filled(row[k]) for k in ("ours", "baseline", "ratio")), row
        assert row["baseline_what"] and row["met"] in (True, False, None), row
    assert report["e2e"], "no end-to-end step ran"
    for step in report["e2e"]:
        assert all(_filled(v) for v in step.values()), step
    for key in ("cpu", "cores", "memory_gb", "python", "kafka"):
        assert report["machine"][key], key

    text = (tmp_path / "report.md").read_text()
    assert "| figure | metric | ours | baseline | ratio | target | met |" in text
    assert len(report["plots"]) == 2
    for name in report["plots"]:
        data = (tmp_path / name).read_bytes()
        assert data.startswith(PNG) and data[12:16] == b"IHDR" and len(data) > 1000, name
        assert f"]({name})" in text
