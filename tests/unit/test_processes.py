from __future__ import annotations

import os
import signal
import sys
import time
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


def test_the_exit_status_of_a_child_this_process_started(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    marker = f"exits-{tmp_path.name}"
    processes.start_detached(
        [sys.executable, "-c", "import sys; print('last words'); sys.exit(3)", marker],
        pid_file=pid_file,
        log_file=tmp_path / "child.log",
        markers=[marker],
    )
    deadline = time.monotonic() + 10
    while processes.exit_status(pid_file) is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert processes.exit_status(pid_file) == 3
    assert processes.running_pid(pid_file) is None
    started, said = processes.log_tail(tmp_path / "child.log")
    assert started.startswith("---- ") and f"started: {sys.executable} -c" in started
    assert said == "last words"


def test_a_child_killed_by_a_signal_and_one_we_did_not_start(tmp_path: Path) -> None:
    pid_file = tmp_path / "sleeper.pid"
    marker = f"killed-{tmp_path.name}"
    pid = processes.start_detached(
        [sys.executable, "-c", "import time; time.sleep(60)", marker],
        pid_file=pid_file,
        log_file=tmp_path / "log",
        markers=[marker],
    )
    assert processes.exit_status(pid_file) is None  # runs
    os.kill(pid, signal.SIGKILL)
    while processes.running_pid(pid_file) is not None:  # a zombie until reaped: not running
        time.sleep(0.02)
    assert processes.exit_status(pid_file) == -signal.SIGKILL
    assert processes.exit_status(tmp_path / "someone-elses.pid") is None


def test_the_log_tail_reads_the_end_of_a_long_log(tmp_path: Path) -> None:
    log = tmp_path / "long.log"
    log.write_text("".join(f"line {n}\n" for n in range(100_000)))
    assert processes.log_tail(log, lines=3) == ["line 99997", "line 99998", "line 99999"]
    assert processes.log_tail(tmp_path / "missing.log") == []


def test_what_is_left_of_its_process_group_goes_with_it(tmp_path: Path) -> None:
    """Like an nginx master killed with SIGKILL: its worker would keep the port and outlive the run."""
    pid_file, worker_pid_file = tmp_path / "master.pid", tmp_path / "worker"
    marker = f"master-{tmp_path.name}"
    spawn_worker = (
        "import subprocess, sys, time; "
        "w = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"open({str(worker_pid_file)!r}, 'w').write(str(w.pid)); time.sleep(60)"
    )
    master = processes.start_detached(
        [sys.executable, "-c", spawn_worker, marker],
        pid_file=pid_file,
        log_file=tmp_path / "log",
        markers=[marker],
    )
    deadline = time.monotonic() + 10
    while not worker_pid_file.exists() or not worker_pid_file.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    worker = int(worker_pid_file.read_text())
    os.kill(master, signal.SIGKILL)
    while processes.exit_status(pid_file) is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert processes.exit_status(pid_file) == -signal.SIGKILL
    while Path(f"/proc/{worker}").exists() and "Z" not in Path(f"/proc/{worker}/stat").read_text().split()[2]:
        assert time.monotonic() < deadline, "the orphaned worker still runs"
        time.sleep(0.02)
