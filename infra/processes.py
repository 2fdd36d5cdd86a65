"""Detached child processes tracked by pid files; stopped only by the pid we recorded, never by name."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path


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
    cmdline = _cmdline(pid)
    if not cmdline or not any(m and m in cmdline for m in markers):
        return None  # gone, or the pid was reused by another program
    try:
        with open(f"/proc/{pid}/stat") as stat:
            if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                return None
    except OSError:
        return None
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
        process = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
    pid_file.write_text("\n".join([str(process.pid), *markers]) + "\n")
    return process.pid


def stop(pid_file: Path, timeout_s: float = 30.0) -> bool:
    """SIGTERM, then SIGKILL after the timeout. Returns whether a process was running."""
    pid = running_pid(pid_file)
    if pid is None:
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
    pid_file.unlink(missing_ok=True)
    return True
