"""Runs the four services as child processes with pid files and logs, each as its own Kafka and
Redis principal; stops them in order."""

from __future__ import annotations

import os
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from infra import credentials, processes
from infra import stack as local_stack
from infra.settings import StackSettings
from producers.aggregates import aggregates


@dataclass(frozen=True)
class Service:
    name: str
    module: str
    principal: str  # its Kafka user and Redis user (infra/kafka_acls.py, infra/redis_server.py)
    health_url: str | None = None
    env: dict[str, str] = field(default_factory=dict)  # on top of the runner's environment


def services(command_port: int = 8001, query_port: int = 8002, projector_port: int = 8011) -> list[Service]:
    return [
        Service("query-api", "query_api.app", "query-api", f"http://127.0.0.1:{query_port}/healthz"),
        Service(
            "projector", "stream_processors.app", "projector", f"http://127.0.0.1:{projector_port}/metrics"
        ),
        Service(
            "projector-transfers",
            "stream_processors.app",
            "projector",
            f"http://127.0.0.1:{projector_port + 1}/metrics",
            {"PROJECTOR_VIEW": "transfers", "PROJECTOR_METRICS_PORT": str(projector_port + 1)},
        ),
        Service(
            "projector-statements",
            "stream_processors.app",
            "projector",
            f"http://127.0.0.1:{projector_port + 2}/metrics",
            {"PROJECTOR_VIEW": "statements", "PROJECTOR_METRICS_PORT": str(projector_port + 2)},
        ),
        Service(
            "transfer-process",
            "stream_processors.transfer_process",
            "transfer-process",
            f"http://127.0.0.1:{projector_port + 3}/healthz",
            {"TRANSFER_PROCESS_METRICS_PORT": str(projector_port + 3)},
        ),
        *(
            Service(
                f"command-processor-{name}",
                "producers.processor",
                "command-processor",
                env={"AGGREGATE": name},
            )
            for name in aggregates()
        ),
        Service(
            "command-api", "producers.api.app", "command-api", f"http://127.0.0.1:{command_port}/healthz"
        ),
    ]


class ServiceRunner:
    def __init__(self, settings: StackSettings, env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.dir = settings.stack_dir.resolve() / "services"
        self.env = {**os.environ, **(env or {})}
        self.started: list[Service] = []
        self.started_at: dict[str, float] = {}  # by name, time.monotonic() of its last start

    def pid_file(self, service: Service) -> Path:
        return self.dir / f"{service.name}.pid"

    def log_file(self, service: Service) -> Path:
        return self.dir / "logs" / f"{service.name}.log"

    def start(self, service: Service) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if processes.running_pid(self.pid_file(service)) is not None:
            raise RuntimeError(
                f"{service.name} already runs (pid file {self.pid_file(service)}); `cqrs stack down` stops it"
            )
        processes.start_detached(
            [sys.executable, "-m", service.module],
            pid_file=self.pid_file(service),
            log_file=self.log_file(service),
            markers=[f"-m {service.module}"],
            env=self.service_env(service),
        )
        self.started_at[service.name] = time.monotonic()
        if service not in self.started:
            self.started.append(service)

    def service_env(self, service: Service) -> dict[str, str]:
        """The runner's environment, the service's own settings, and (when the local stack has
        credentials) the service's principal: KAFKA_SASL_*, KAFKA_SECURITY_PROTOCOL and a REDIS_URL
        with its Redis user."""
        env = {**self.env, **service.env}
        passwords = credentials.load(self.settings.stack_dir)
        if passwords is not None:
            on = local_stack.secured(self.settings)
            redis_url = env.get("REDIS_URL", self.settings.redis_url)
            password = passwords[service.principal]
            env |= credentials.client_env(
                service.principal, password, redis_url, kafka=on.kafka, redis=on.redis
            )
        return env

    def healthy(self, service: Service) -> bool:
        """Its health URL answers 200 (a service without one: it runs)."""
        if service.health_url is None:
            return processes.running_pid(self.pid_file(service)) is not None
        try:
            with urllib.request.urlopen(service.health_url, timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def wait_healthy(self, service: Service, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if processes.running_pid(self.pid_file(service)) is None:
                raise RuntimeError(f"{service.name} exited; see {self.log_file(service)}")
            if self.healthy(service):
                return
            time.sleep(0.2)
        raise RuntimeError(f"{service.name} not healthy in {timeout_s:.0f}s; see {self.log_file(service)}")

    def supervised(self, service: Service) -> processes.Supervised:
        """The service for `cqrs run`'s supervisor: restarted the way it was started, back once healthy."""
        return processes.Supervised(
            service.name,
            self.pid_file(service),
            self.log_file(service),
            starter=lambda: self.start(service),
            health=lambda: self.healthy(service),
        )

    def stop_all(self, names: list[Service] | None = None) -> None:
        """Stops in reverse start order: intake first, so nothing accepted is left unprocessed."""
        for service in reversed(names or services()):
            processes.stop(self.pid_file(service), timeout_s=30)
