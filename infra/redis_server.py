"""Debian's redis-server on loopback with a data folder of the stack's own."""

from __future__ import annotations

import time

import redis

from infra import credentials, processes
from infra.debian import ensure_program
from infra.kafka_broker import StackError, _port_open
from infra.settings import StackSettings
from stream_processors import layout
from stream_processors.views.registry import VIEWS

# Every key and channel the services use is under `view:` (stream_processors/layout.py): rows,
# generations, checkpoints, status, the recovery lock, and the `view:<view>:changed:<row>`
# channels.
VIEW_KEYS = "~view:*"
READ_ONLY = (
    "-@all +@read +@connection -@dangerous"
    # one-round-trip query scripts; a script's commands run with this user's rights, so it reads only
    " +evalsha +eval +evalsha_ro +eval_ro +script|load +script|exists"
    " +psubscribe +punsubscribe +subscribe +unsubscribe"
)


def change_patterns() -> str:
    """The query API's PSUBSCRIBE patterns, one per served view. Redis checks a PSUBSCRIBE pattern
    against the user's channel patterns literally (`&view:*` does not allow PSUBSCRIBE
    `view:accounts:changed:*`; checked on Redis 7.0), so each is granted as it is subscribed. A view
    added by CQRS_EXTRA_MODULES is covered when the stack starts with the same setting."""
    return " ".join(
        f"&{layout.changes_pattern(name)}" for name, spec in sorted(VIEWS.items()) if spec.queried
    )


def acl_users() -> dict[str, str]:
    return {
        # the CLI, the test process: everything, but by name and password (the default user is off)
        credentials.OPERATOR: "~* &* +@all",
        # projectors, rebuilds, catch-up workers: read and write the views, publish changes; no
        # administration (CONFIG, FLUSHALL, DEBUG, KEYS, ...)
        "projector": f"{VIEW_KEYS} &view:* +@all -@admin -@dangerous",
        "query-api": f"{VIEW_KEYS} {change_patterns()} {READ_ONLY}",
    }


def acl_file(passwords: dict[str, str]) -> str:
    """Redis ACL users: `default` off, one user per role that uses Redis."""
    # `default` is off: no client can use it (every connection must AUTH as a user below). It
    # still has every right because Redis replays the append-only file as `default`, and Redis 7
    # re-checks EXEC against that user's rights: with `-@all` every MULTI/EXEC in the file (each
    # projector batch with its checkpoint) was refused, silently, on a restart, leaving a partial
    # view (redis/redis#14541, fixed upstream by #14545; seen on Debian's 7.0.15).
    lines = ["user default off resetkeys resetchannels ~* &* +@all"]
    lines += [
        f"user {user} on >{passwords[user]} resetkeys resetchannels {rules}"
        for user, rules in acl_users().items()
    ]
    return "\n".join(lines) + "\n"


def ensure_redis_server() -> str:
    """The redis-server binary; installed from Debian's packages when missing and possible."""
    return ensure_program(
        ("redis-server", "/usr/bin/redis-server"),
        ("redis-server",),
        "redis-server is not installed: `sudo apt-get install redis-server`, or point "
        "REDIS_URL at a running Redis and skip the local one",
    )


class RedisServer:
    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.home = settings.stack_dir.resolve() / "redis"
        self.pid_file = self.home / "redis.pid"
        self.log_file = self.home / "redis.log"

    def pid(self) -> int | None:
        return processes.running_pid(self.pid_file)

    def operator_client(self, passwords: dict[str, str], socket_timeout: float) -> redis.Redis:
        """A client of this server as the operator user (the stack's own checks)."""
        host, port = self.settings.redis_host_port
        return redis.Redis(
            host=host,
            port=port,
            username=credentials.OPERATOR,
            password=passwords[credentials.OPERATOR],
            socket_timeout=socket_timeout,
        )

    def start(self, timeout_s: float = 20.0) -> bool:
        if self.pid() is not None:
            return False
        host, port = self.settings.redis_host_port
        if self.pid_file.exists():  # ours, gone: a child it forked (an AOF rewrite) may hold the port a while
            deadline = time.monotonic() + 30
            while _port_open(host, port) and time.monotonic() < deadline:
                time.sleep(0.1)
        if _port_open(host, port):
            raise StackError(f"{host}:{port} is taken by a process this stack did not start")
        binary = ensure_redis_server()
        self.home.mkdir(parents=True, exist_ok=True)
        passwords = credentials.ensure(self.settings.stack_dir)
        users = self.home / "users.acl"  # rewritten on every start: a changed password takes effect
        users.touch(mode=0o600)
        users.chmod(0o600)
        users.write_text(acl_file(passwords))
        processes.start_detached(
            [
                binary,
                "--bind",
                host,
                "--port",
                str(port),
                "--dir",
                str(self.home),
                "--appendonly",
                "yes",
                "--save",
                "",
                "--daemonize",
                "no",
                "--logfile",
                "",
                "--pidfile",
                str(self.home / "redis-server.pid"),
                "--aclfile",
                str(users),
            ],
            pid_file=self.pid_file,
            log_file=self.log_file,
            # redis rewrites its process title to "redis-server host:port" once it runs
            markers=[f"--port {port}", f"{host}:{port}"],
        )
        deadline = time.monotonic() + timeout_s
        client = self.operator_client(passwords, socket_timeout=1)
        try:
            while time.monotonic() < deadline:
                if self.pid() is None:
                    raise StackError(f"redis-server exited; see {self.log_file}")
                try:
                    if client.ping():
                        return True
                except redis.RedisError:
                    time.sleep(0.1)
        finally:
            client.close()
        raise StackError(f"Redis did not answer PING within {timeout_s:.0f}s; see {self.log_file}")

    def stop(self) -> bool:
        return processes.stop(self.pid_file, timeout_s=20)
