"""Detached child processes tracked by pid files; stopped only by the pid we recorded, never by name."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

# The children this process started, by pid file. Holding the handle keeps an exited child a zombie
# until `exit_status` reaps it, so its exit code (or signal) is still there to report; and a zombie's
# pid cannot be reused meanwhile. (A dropped handle would be reaped by the next Popen, status lost.)
_children: dict[Path, subprocess.Popen[bytes]] = {}


def _cmdline(pid: int) -> str:
    """The command line; briefly empty while a just-started child is still in exec, so retry."""
    for _ in range(40):
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return ""
        if raw:
            return raw.replace(b"\0", b" ").decode(errors="replace")
        time.sleep(0.025)
    return ""


def running_pid(pid_file: Path) -> int | None:
    """The recorded pid if that process still runs and is still the one we started."""
    try:
        pid_text, *markers = pid_file.read_text().splitlines()
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    try:  # first: a zombie's command line is empty, and _cmdline would wait for it
        with open(f"/proc/{pid}/stat") as stat:
            if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                return None
    except OSError:
        return None
    cmdline = _cmdline(pid)
    if not cmdline or not any(m and m in cmdline for m in markers):
        return None  # gone, or the pid was reused by another program
    return pid


def start_detached(
    argv: Sequence[str],
    *,
    pid_file: Path,
    log_file: Path,
    markers: Sequence[str],
    env: dict[str, str] | None = None,
) -> int:
    """Start in its own session (so Ctrl-C in the terminal does not reach it) and record the pid.

    `markers`: strings of which one is in the process's command line (e.g. a config path); they
    tell our process from another that got the same pid later.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        # logs are appended to across starts: this line tells where each start's output begins
        log.write(f"---- {time.strftime('%Y-%m-%d %H:%M:%S')} started: {shlex.join(argv)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
    pid_file.write_text("\n".join([str(process.pid), *markers]) + "\n")
    _children[pid_file.resolve()] = process
    return process.pid


def exit_status(pid_file: Path) -> int | None:
    """How the child last started for `pid_file` by this process ended, as Popen's returncode
    (negative: killed by that signal); None while it runs, or if another process started it.
    Once it has ended, what is left of its process group is killed (see `_end`)."""
    process = _children.get(pid_file.resolve())
    if process is None:
        return None
    if process.returncode is None and _has_exited(process.pid):
        _end(process)
    return process.returncode


def _has_exited(pid: int) -> bool:
    """Exited, but not reaped: WNOWAIT leaves it a zombie, so its pid is not yet free for reuse."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True  # reaped already (by poll)


def _end(process: subprocess.Popen[bytes]) -> None:
    """Kill the rest of an exited child's process group, then reap the child. start_detached made
    the group (its own session; group id = the child's pid), and the zombie still holds that id, so
    every member is a process the child started: e.g. the nginx worker whose master was killed,
    which would keep the gateway's port and outlive the run."""
    with contextlib.suppress(ProcessLookupError):  # no one left
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=5)


def log_tail(log_file: Path, lines: int = 10, max_bytes: int = 16384) -> list[str]:
    """The last lines of a log file (read from its end: logs grow), empty if there is none."""
    try:
        with open(log_file, "rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - max_bytes))
            text = log.read().decode(errors="replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]


def _reap(pid_file: Path) -> None:
    """After `stop`, or when it is found not running: no zombie, no leftovers of its group."""
    process = _children.pop(pid_file.resolve(), None)
    if process is not None and process.returncode is None:
        _end(process)


def stop(pid_file: Path, timeout_s: float = 30.0) -> bool:
    """SIGTERM, then SIGKILL after the timeout. Returns whether a process was running."""
    pid = running_pid(pid_file)
    if pid is None:
        _reap(pid_file)
        pid_file.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if running_pid(pid_file) is None:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
        while running_pid(pid_file) is not None:
            time.sleep(0.05)
    _reap(pid_file)
    pid_file.unlink(missing_ok=True)
    return True


def _no_health_check() -> bool:
    return True


@dataclass(frozen=True)
class Supervised:
    """A detached child as infra/supervisor.py sees it: its pid file and log, how to start it
    (the same call that started it first) and, if it has one, its health check."""

    name: str
    pid_file: Path
    log_file: Path
    starter: Callable[[], object]
    health: Callable[[], bool] = _no_health_check

    def pid(self) -> int | None:
        return running_pid(self.pid_file)

    def start(self) -> None:
        self.starter()

    def exit_status(self) -> int | None:
        return exit_status(self.pid_file)

    def log_tail(self) -> list[str]:
        return log_tail(self.log_file)

    def healthy(self) -> bool:
        return self.health()
