"""Programs the local stack and tests run from Debian's packages (redis-server, nginx, chromium):
found on the PATH or where Debian puts them, else installed with apt when running as root."""

from __future__ import annotations

import os
import shutil
import subprocess

from infra.kafka_broker import StackError


def ensure_program(names: tuple[str, ...], packages: tuple[str, ...], hint: str) -> str:
    """The path of the first of `names` found (a name, or an absolute path); else the first of
    `packages` that apt installs (root only); else StackError with `hint`, which says what to do."""

    def found() -> str | None:
        for name in names:
            path = name if os.path.isabs(name) and os.path.exists(name) else shutil.which(name)
            if path:
                return path
        return None

    if path := found():
        return path
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise StackError(hint)
    print(f"{names[0]} is missing: installing Debian's {packages[0]} ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    failed = subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True, env=env)
    for package in packages:
        command = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package]
        failed = subprocess.run(command, capture_output=True, text=True, env=env)
        if failed.returncode == 0 and (path := found()):
            return path
    raise StackError(f"apt-get could not install {' or '.join(packages)}:\n{failed.stderr}\n{hint}")
