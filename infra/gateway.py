"""The API gateway of `make run`: Debian's nginx with deploy/gateway.conf, the routing compose uses."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

from infra import processes
from infra.debian import ensure_program
from infra.kafka_broker import StackError, _port_open
from infra.settings import StackSettings

SHARED_CONF = Path(__file__).resolve().parents[1] / "deploy" / "gateway.conf"
NGINX = "/usr/sbin/nginx"
# compose's port in the shared file; the local gateway listens on GATEWAY_PORT, loopback only
LISTEN = re.compile(r"^(\s*)listen\s+8000;", re.MULTILINE)
# `--http-<name>-temp-path=` in `nginx -V`: built in, under /var/lib/nginx (root's) on Debian
TEMP_PATH = re.compile(r"--http-([a-z-]+)-temp-path=")


def ensure_nginx() -> str:
    """The nginx binary; installed from Debian's packages when missing and possible."""
    return ensure_program(
        ("nginx", NGINX),
        ("nginx-light", "nginx"),  # nginx-light: transitional in bookworm, gone later
        "nginx is not installed: `sudo apt-get install nginx-light` (or `nginx`); the gateway "
        "runs it as a plain child process with its own folder, not as a system service",
    )


def render(shared: str, port: int) -> str:
    """deploy/gateway.conf with the local listen address; everything else as compose has it."""
    rendered, count = LISTEN.subn(rf"\g<1>listen 127.0.0.1:{port};", shared)
    if count != 1:
        raise StackError(f"{SHARED_CONF} must have exactly one `listen 8000;` line (found {count})")
    return rendered


def temp_paths(binary: str) -> list[str]:
    """The temporary folders this build has (client_body, proxy, fastcgi, uwsgi, scgi), each of
    which nginx creates at start: all must be ours, or a non-root start fails."""
    built = subprocess.run([binary, "-V"], capture_output=True, text=True).stderr
    return [name.replace("-", "_") for name in TEMP_PATH.findall(built)]


def main_conf(home: Path, temp_paths: list[str], command_port: int, query_port: int) -> str:
    """The local top-level file: process settings and paths under `home`, the two upstreams on
    loopback, then the shared gateway (compose's deploy/nginx.conf does the same with its hosts)."""
    temp = "\n".join(f"  {name}_temp_path {home / 'temp' / name};" for name in temp_paths)
    return f"""# written by infra/gateway.py on every start; the routing is in gateway.conf
worker_processes 1;
pid {home / "nginx.pid"};
error_log {home / "logs" / "error.log"} warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
{temp}
  upstream command_api {{ server 127.0.0.1:{command_port}; }}
  upstream query_api   {{ server 127.0.0.1:{query_port}; }}
  include {home / "gateway.conf"};
}}
"""


class Gateway:
    def __init__(
        self, settings: StackSettings, port: int = 8000, command_port: int = 8001, query_port: int = 8002
    ) -> None:
        self.home = settings.stack_dir.resolve() / "gateway"
        self.port, self.command_port, self.query_port = port, command_port, query_port
        self.conf = self.home / "nginx.conf"
        self.pid_file = self.home / "gateway.pid"
        self.log_file = self.home / "logs" / "nginx.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pid(self) -> int | None:
        return processes.running_pid(self.pid_file)

    def start(self, timeout_s: float = 10.0) -> bool:
        """Starts nginx unless this stack's already runs; returns whether it started it."""
        if self.pid() is not None:
            return False
        if _port_open("127.0.0.1", self.port):
            raise StackError(f"127.0.0.1:{self.port} is taken by a process this stack did not start")
        binary = ensure_nginx()
        for folder in ("logs", "temp"):  # nginx makes the folders in temp/, not temp/ itself
            (self.home / folder).mkdir(parents=True, exist_ok=True)
        (self.home / "gateway.conf").write_text(render(SHARED_CONF.read_text(), self.port))
        self.conf.write_text(main_conf(self.home, temp_paths(binary), self.command_port, self.query_port))
        # -e: the error log before the configuration is read (else Debian's /var/log/nginx)
        error_log = str(self.home / "logs" / "error.log")
        argv = [binary, "-p", f"{self.home}/", "-e", error_log, "-c", str(self.conf)]
        check = subprocess.run([*argv, "-t", "-q"], capture_output=True, text=True)
        if check.returncode != 0:
            raise StackError(f"nginx refused {self.conf}:\n{check.stderr.strip()}")
        processes.start_detached(
            [*argv, "-g", "daemon off;"],
            pid_file=self.pid_file,
            log_file=self.log_file,
            markers=[f"-c {self.conf}"],  # nginx keeps its argv in the master's process title
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.pid() is None:
                raise StackError(f"nginx exited; see {self.log_file} and {self.home / 'logs' / 'error.log'}")
            if _port_open("127.0.0.1", self.port):
                return True
            time.sleep(0.05)
        raise StackError(f"nginx did not listen on :{self.port} within {timeout_s:.0f}s; see {self.log_file}")

    def stop(self) -> bool:
        return processes.stop(self.pid_file, timeout_s=10)
