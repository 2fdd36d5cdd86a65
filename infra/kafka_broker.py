"""The genuine Apache Kafka broker in KRaft combined mode, run from its Maven Central jars."""

from __future__ import annotations

import hashlib
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from confluent_kafka.admin import AdminClient

from infra import credentials, processes
from infra.kafka_acls import admin_client, ensure_users_and_acls
from infra.settings import StackSettings
from schemas.kafka_security import KafkaSecurity

POM = Path(__file__).parent / "kafka" / "pom.xml"


class StackError(RuntimeError):
    """A prerequisite is missing or a server did not come up; the message says what to do."""


def _java_major() -> int:
    java = shutil.which("java")
    if java is None:
        raise StackError(
            "Java 17 or newer is needed for the Kafka broker: apt-get install openjdk-17-jre-headless"
        )
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not match:
        raise StackError(f"cannot read the Java version from: {out.strip()}")
    major = int(match[1])
    return int(match[2]) if major == 1 and match[2] else major


def ensure_jars(settings: StackSettings) -> Path:
    """Fetch the broker classpath once into the cache; later calls reuse it."""
    # Keyed by the pom's content too, so adding an artifact (e.g. the tools) fetches again.
    pom_digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:8]
    libs = settings.cache_dir.resolve() / f"kafka-{settings.kafka_version}-{pom_digest}" / "libs"
    done = libs / ".complete"
    if done.exists():
        return libs
    if _java_major() < 17:
        raise StackError("Kafka 4.x needs Java 17 or newer")
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError("Maven is needed once to fetch the Kafka jars: apt-get install maven")
    print(
        f"fetching Apache Kafka {settings.kafka_version} jars from Maven Central into {libs} ...", flush=True
    )
    libs.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [
            mvn,
            "-q",
            "-B",
            "-f",
            str(POM),
            f"-Dkafka.version={settings.kafka_version}",
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={libs}",
        ],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise StackError(f"mvn could not fetch the Kafka jars:\n{result.stdout}{result.stderr}")
    if any(p.name.startswith("slf4j-api-2") for p in libs.glob("*.jar")):
        raise StackError("slf4j-api 2.x landed on the broker classpath; broker logging would go dark")
    done.touch()
    return libs


class KafkaBroker:
    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.home = settings.stack_dir.resolve() / "kafka"
        self.properties = self.home / "server.properties"
        self.pid_file = self.home / "kafka.pid"
        self.log_file = self.home / "logs" / "stdout.log"

    def _write_config(self, admin_password: str) -> None:
        host, port = self.settings.kafka_host_port
        cport = self.settings.controller_port
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        # The broker's own connections (inter-broker, to the controller) log in as `admin` with
        # SASL/PLAIN against a static JAAS user, so no SCRAM credential has to exist before the
        # first start (no bootstrapping at format time; formatted stack dirs keep working). Roles
        # log in with SCRAM-SHA-512; their users and ACLs are created after start (kafka_acls.py).
        plain = (
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="{credentials.ADMIN}" password="{admin_password}" '
            f'user_{credentials.ADMIN}="{admin_password}";'
        )
        self.properties.touch(mode=0o600)
        self.properties.chmod(0o600)  # it holds the admin password
        self.properties.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@{host}:{cport}",
                    f"listeners=SASL_PLAINTEXT://{host}:{port},CONTROLLER://{host}:{cport}",
                    f"advertised.listeners=SASL_PLAINTEXT://{host}:{port}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=SASL_PLAINTEXT",
                    "listener.security.protocol.map=SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT",
                    f"listener.name.sasl_plaintext.sasl.enabled.mechanisms=PLAIN,{credentials.KAFKA_MECHANISM}",
                    f"listener.name.sasl_plaintext.plain.sasl.jaas.config={plain}",
                    f"listener.name.sasl_plaintext.{credentials.KAFKA_MECHANISM.lower()}.sasl.jaas.config="
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;",
                    "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
                    f"listener.name.controller.plain.sasl.jaas.config={plain}",
                    "sasl.mechanism.inter.broker.protocol=PLAIN",
                    "sasl.mechanism.controller.protocol=PLAIN",
                    "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                    "allow.everyone.if.no.acl.found=false",
                    f"super.users=User:{credentials.ADMIN}",
                    f"log.dirs={self.home / 'data'}",
                    "num.partitions=1",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=12",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "transaction.state.log.num.partitions=12",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "auto.create.topics.enable=false",
                    "log.cleaner.dedupe.buffer.size=16777216",
                    "num.network.threads=2",
                    "num.io.threads=4",
                    "",
                ]
            )
        )
        (self.home / "log4j2.yaml").write_text(
            "Configuration:\n"
            "  Appenders:\n"
            "    RollingFile:\n"
            "      name: server\n"
            f"      fileName: {self.home / 'logs' / 'server.log'}\n"
            f"      filePattern: {self.home / 'logs' / 'server.log.%i'}\n"
            '      PatternLayout: {pattern: "[%d] %p %m (%c)%n"}\n'
            "      SizeBasedTriggeringPolicy: {size: 20MB}\n"
            "      DefaultRolloverStrategy: {max: 3}\n"
            "  Loggers:\n"
            "    Root:\n"
            "      level: INFO\n"
            "      AppenderRef: [{ref: server}]\n"
        )

    def _java(self, libs: Path, *args: str) -> list[str]:
        return [
            "java",
            f"-Xms{self.settings.kafka_heap}",
            f"-Xmx{self.settings.kafka_heap}",
            f"-Dlog4j2.configurationFile={self.home / 'log4j2.yaml'}",
            "-cp",
            f"{libs}/*",
            *args,
        ]

    def _format(self, libs: Path) -> None:
        if (self.home / "data" / "meta.properties").exists():
            return
        cluster_id = (
            subprocess.run(
                ["java", "-cp", f"{libs}/*", "kafka.tools.StorageTool", "random-uuid"],
                capture_output=True,
                text=True,
                check=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        result = subprocess.run(
            self._java(
                libs,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(self.properties),
                "--ignore-formatted",
            ),
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise StackError(f"formatting Kafka storage failed:\n{result.stdout}{result.stderr}")

    def pid(self) -> int | None:
        return processes.running_pid(self.pid_file)

    def start(self, timeout_s: float = 90.0) -> bool:
        """Start unless running; wait until it answers metadata. Returns whether it started."""
        if self.pid() is not None:
            return False
        host, port = self.settings.kafka_host_port
        if _port_open(host, port):
            raise StackError(f"{host}:{port} is taken by a process this stack did not start")
        libs = ensure_jars(self.settings)
        passwords = credentials.ensure(self.settings.stack_dir)
        self._write_config(passwords[credentials.ADMIN])
        self._format(libs)
        processes.start_detached(
            self._java(libs, "kafka.Kafka", str(self.properties)),
            pid_file=self.pid_file,
            log_file=self.log_file,
            markers=[str(self.properties)],
        )
        self.wait_ready(timeout_s)
        return True

    def wait_ready(self, timeout_s: float) -> None:
        """Answering metadata to `admin`; then the roles' users and ACLs are set, and it is ready
        once the operator, too, authenticates (SCRAM) and is authorized."""
        host, port = self.settings.kafka_host_port
        bootstrap = f"{host}:{port}"
        passwords = credentials.ensure(self.settings.stack_dir)
        deadline = time.monotonic() + timeout_s
        self._wait_answers(deadline, lambda: admin_client(bootstrap, passwords[credentials.ADMIN]))
        try:
            ensure_users_and_acls(bootstrap, passwords)
        except RuntimeError as exc:
            raise StackError(f"{exc}; see {self.home / 'logs'}") from None
        operator = KafkaSecurity.for_user(
            credentials.OPERATOR, passwords[credentials.OPERATOR], credentials.KAFKA_MECHANISM
        )
        self._wait_answers(
            deadline,
            lambda: AdminClient({"bootstrap.servers": bootstrap, **operator.librdkafka(), "log_level": 0}),
        )

    def _wait_answers(self, deadline: float, admin: Callable[[], AdminClient]) -> None:
        host, port = self.settings.kafka_host_port
        client: AdminClient | None = None
        while time.monotonic() < deadline:
            if self.pid() is None:
                raise StackError(f"the Kafka broker exited; see {self.home / 'logs'}")
            if _port_open(host, port):
                client = client or admin()
                try:
                    # A refused login fails at once with _AUTHENTICATION; keep trying until the
                    # deadline, because SCRAM users take a moment to reach the broker's cache.
                    client.list_topics(timeout=2)
                    return
                except Exception:
                    pass
            time.sleep(0.2)
        raise StackError(
            f"Kafka did not answer metadata to an authenticated client within the deadline; "
            f"see {self.home / 'logs'}"
        )

    def stop(self) -> bool:
        return processes.stop(self.pid_file, timeout_s=60)


def _port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0
