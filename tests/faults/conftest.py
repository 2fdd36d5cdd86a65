"""A private Kafka and Redis per fault-test package, so killing or pausing a server disturbs no other
test: its own stack folder, its own ports (the session's + FAULTS_PORT_OFFSET, default 100), its own
credentials. While it is up, this process acts as its operator (KAFKA_SASL_*, REDIS_URL).
`started(stack_on(...))` makes one on other ports and folders (test_cluster.py: a cluster of three)."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from infra import credentials
from infra import stack as local_stack
from infra.kafka_broker import KafkaBroker
from infra.settings import StackSettings, TopicSettings
from infra.topics import ensure_topics, publish_released_schemas

OFFSET = int(os.environ.get("FAULTS_PORT_OFFSET", "100"))


def _port(variable: str, default: int, offset: int) -> int:
    return int(os.environ.get(variable, str(default))) + offset


@dataclass
class PrivateStack:
    settings: StackSettings
    command_api_port: int
    query_api_port: int
    projector_port: int

    @property
    def bootstrap(self) -> str:
        return self.settings.bootstrap_servers

    @property
    def command_url(self) -> str:
        return f"http://127.0.0.1:{self.command_api_port}"

    @property
    def query_url(self) -> str:
        return f"http://127.0.0.1:{self.query_api_port}"

    @property
    def broker(self) -> KafkaBroker:
        return KafkaBroker(self.settings)

    def broker_pid(self) -> int:
        pid = self.broker.pid()
        assert pid is not None, "the private broker is not running"
        return pid

    def kill_broker(self) -> None:
        """SIGKILL: no clean shutdown, open transactions and group sessions left as they were."""
        pid = self.broker_pid()
        os.kill(pid, signal.SIGKILL)
        while self.broker.pid() is not None:
            time.sleep(0.05)

    def start_broker(self, timeout_s: float = 90) -> float:
        """Start it again on its data; returns the seconds until it answers authenticated clients."""
        began = time.monotonic()
        self.broker.start(timeout_s)
        return time.monotonic() - began

    def pause_broker(self) -> None:
        """SIGSTOP: connections stay open and nothing answers, as with a hung or partitioned broker."""
        os.kill(self.broker_pid(), signal.SIGSTOP)

    def resume_broker(self) -> None:
        os.kill(self.broker_pid(), signal.SIGCONT)

    def log_dir(self, test: str) -> Path:
        """Where a test's processes log: under the stack folder, kept after the run for a look."""
        folder = self.settings.stack_dir.resolve() / "logs" / test
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def operator_env(self) -> dict[str, str]:
        passwords = credentials.ensure(self.settings.stack_dir)
        return credentials.client_env(
            credentials.OPERATOR, passwords[credentials.OPERATOR], self.settings.redis_url
        )

    def service_env(self) -> dict[str, str]:
        """What the services started on this stack read (infra/services.py adds their principals)."""
        return {
            "STACK_DIR": str(self.settings.stack_dir),
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "REDIS_URL": self.settings.redis_url,
            "COMMAND_API_PORT": str(self.command_api_port),
            "QUERY_API_PORT": str(self.query_api_port),
            "PROJECTOR_METRICS_PORT": str(self.projector_port),
        }


@pytest.fixture(scope="package")
def private_stack() -> Iterator[PrivateStack]:
    with started(stack_on(OFFSET, "faults")) as stack:
        yield stack


def stack_on(offset: int, suffix: str, brokers: int = 1) -> PrivateStack:
    """A stack on the session's ports + `offset`, in `<STACK_DIR>-<suffix>` (not started)."""
    session = StackSettings(  # the session's stack (`make test`: 19092, 16379), from the environment
        kafka_bootstrap_servers=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092"),
        redis_url=os.environ.get("REDIS_URL", "redis://127.0.0.1:16379/0"),
    )
    kafka_port = session.kafka_host_port[1] + offset
    redis_port = session.redis_host_port[1] + offset
    session_dir = Path(os.environ.get("STACK_DIR", ".stack/test"))
    settings = StackSettings(
        stack_dir=Path(f"{session_dir}-{suffix}"),
        kafka_bootstrap_servers=f"127.0.0.1:{kafka_port}",
        redis_url=f"redis://127.0.0.1:{redis_port}/0",
        kafka_controller_port=kafka_port + 1,
        kafka_brokers=brokers,
    )
    return PrivateStack(
        settings,
        command_api_port=_port("COMMAND_API_PORT", 18001, offset),
        query_api_port=_port("QUERY_API_PORT", 18002, offset),
        projector_port=_port("PROJECTOR_METRICS_PORT", 18011, offset),
    )


@contextmanager
def started(stack: PrivateStack) -> Iterator[PrivateStack]:
    """The stack up on fresh data, with the topics (4 partitions) and the schemas, this process its
    operator; stopped after."""
    settings = stack.settings
    with pytest.MonkeyPatch.context() as env:
        try:
            # Fresh data every run: a broker restarted on the topics of many earlier runs takes
            # longer to lead them all again, which is not what these tests measure.
            local_stack.down(settings)
            home = settings.stack_dir.resolve()
            for folder in [*home.glob("kafka*/data"), home / "redis" / "appendonlydir"]:
                shutil.rmtree(folder, ignore_errors=True)
            (home / "redis" / "dump.rdb").unlink(missing_ok=True)
            local_stack.up(settings)
            for name, value in stack.operator_env().items():
                env.setenv(name, value)
            topics = TopicSettings(
                kafka_bootstrap_servers=stack.bootstrap,
                kafka_brokers=settings.kafka_brokers,
                topic_partitions=4,
            )
            ensure_topics(topics)
            publish_released_schemas(topics)
            yield stack
        finally:
            if stack.broker.pid() is not None:
                stack.resume_broker()  # a test that failed while it was paused
            local_stack.down(settings)
