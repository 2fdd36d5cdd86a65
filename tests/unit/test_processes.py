from __future__ import annotations

import sys
from pathlib import Path

from infra import processes


def test_start_and_stop_by_recorded_pid(tmp_path: Path) -> None:
    pid_file = tmp_path / "sleeper.pid"
    marker = f"sleeper-{tmp_path.name}"
    pid = processes.start_detached(
        [sys.executable, "-c", "import time, sys; time.sleep(60)", marker],
        pid_file=pid_file,
        log_file=tmp_path / "log",
        markers=[marker],
    )
    assert processes.running_pid(pid_file) == pid
    assert processes.stop(pid_file, timeout_s=5) is True
    assert processes.running_pid(pid_file) is None
    assert not pid_file.exists()
    assert processes.stop(pid_file) is False


def test_a_pid_that_now_belongs_to_another_program_is_not_ours(tmp_path: Path) -> None:
    pid_file = tmp_path / "x.pid"
    pid_file.write_text(f"1\nnot-this-program-{tmp_path.name}\n")  # pid 1 runs, but is not ours
    assert processes.running_pid(pid_file) is None
