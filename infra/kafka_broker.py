"""The genuine Apache Kafka broker in KRaft combined mode, run from its Maven Central jars: one
node, or a quorum of three on loopback (KAFKA_BROKERS=3)."""

from __future__ import annotations

import hashlib
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from confluent_kafka.admin import AdminClient

from infra import credentials, processes
from infra.kafka_acls import admin_client, ensure_users_and_acls
from infra.settings import StackSettings, min_insync_replicas, replication_factor
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
    """One node (broker and controller) of the local Kafka; node 1 unless told otherwise."""

    def __init__(self, settings: StackSettings, node_id: int = 1) -> None:
        self.settings = settings
        self.node = next(n for n in settings.kafka_nodes if n.node_id == node_id)
        self.home = settings.stack_dir.resolve() / self.node.folder
        self.properties = self.home / "server.properties"
        self.pid_file = self.home / "kafka.pid"
        self.log_file = self.home / "logs" / "stdout.log"

    @property
    def name(self) -> str:
        return self.node.folder

    def _write_config(self, admin_password: str) -> None:
        host, port, cport = self.node.host, self.node.port, self.node.controller_port
        voters = ",".join(f"{n.node_id}@{n.host}:{n.controller_port}" for n in self.settings.kafka_nodes)
        copies = replication_factor(self.settings.kafka_brokers)
        min_isr = min_insync_replicas(self.settings.kafka_brokers)
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
                    f"node.id={self.node.node_id}",
                    f"controller.quorum.voters={voters}",
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
                    # one broker: 1 and 1; a cluster: 3 copies, 2 in sync for a write (settings.py)
                    f"default.replication.factor={copies}",
                    f"min.insync.replicas={min_isr}",
                    f"offsets.topic.replication.factor={copies}",
                    "offsets.topic.num.partitions=12",
                    f"transaction.state.log.replication.factor={copies}",
                    f"transaction.state.log.min.isr={min_isr}",
                    "transaction.state.log.num.partitions=12",
                    f"share.coordinator.state.topic.replication.factor={copies}",
                    f"share.coordinator.state.topic.min.isr={min_isr}",
                    *self._cluster_only(),
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

    def _cluster_only(self) -> list[str]:
        if self.settings.kafka_brokers == 1:
            return []
        # A controlled shutdown waits for the controllers to approve it; when the whole cluster
        # stops, the last node waits for a quorum that is gone (minutes, then a SIGKILL). So a
        # node stops at once, its logs closed cleanly, and its partitions get new leaders when
        # its session ends (broker.session.timeout.ms), as after a crash.
        return ["controlled.shutdown.enable=false"]

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
        cluster_id = _cluster_id(self.settings, libs)
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
        """Start unless running; wait until it answers metadata. Returns whether it started.
        (A node of a cluster answers only while a majority of the controllers runs: start the
        first ones with `KafkaCluster.start`; one node alone, e.g. after a crash, with this.)"""
        if not self.launch():
            return False
        self.wait_ready(timeout_s)
        return True

    def launch(self) -> bool:
        """Start the process unless it runs, without waiting for it. Returns whether it started."""
        if self.pid() is not None:
            return False
        host, port = self.node.host, self.node.port
        if _port_open(host, port):
            raise StackError(f"{host}:{port} is taken by a process this stack did not start{_hint(self)}")
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
        return True

    def wait_ready(self, timeout_s: float) -> None:
        """Answering metadata to `admin`, and registered (unfenced) with the controllers; then the
        roles' users and ACLs are set, and it is ready once the operator, too, authenticates
        (SCRAM) on it and is authorized."""
        bootstrap = self.node.address
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
        host, port = self.node.host, self.node.port
        client: AdminClient | None = None
        while time.monotonic() < deadline:
            if self.pid() is None:
                raise StackError(f"the Kafka broker exited; see {self.home / 'logs'}")
            if _port_open(host, port):
                client = client or admin()
                try:
                    # A refused login fails at once with _AUTHENTICATION; keep trying until the
                    # deadline, because SCRAM users take a moment to reach the broker's cache.
                    # A broker answers before it has caught up with the metadata and is unfenced;
                    # until then it is missing from the live brokers it lists.
                    if self.node.node_id in client.list_topics(timeout=2).brokers:
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


class KafkaCluster:
    """Every node of the local Kafka as StackSettings lays them out: one, or a quorum of three."""

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.brokers = [KafkaBroker(settings, node.node_id) for node in settings.kafka_nodes]

    def broker(self, node_id: int) -> KafkaBroker:
        return self.brokers[node_id - 1]

    def start(self, timeout_s: float = 120.0) -> bool:
        """Start the nodes that are not running, all at once (none answers before a majority of
        the controllers runs), and wait until every node is ready. Returns whether any started."""
        launched = [broker.launch() for broker in self.brokers]
        deadline = time.monotonic() + timeout_s
        for broker in self.brokers:
            broker.wait_ready(max(1.0, deadline - time.monotonic()))
        return any(launched)

    def stop(self) -> list[str]:
        """Stop every node at once (one by one, the last would wait for a quorum that is gone),
        and any other broker this stack folder holds (started with another KAFKA_BROKERS).
        Returns the names of those that were running."""
        pid_files = {b.pid_file: b.name for b in self.brokers}
        for other in sorted(self.settings.stack_dir.resolve().glob("kafka*/kafka.pid")):
            pid_files.setdefault(other, other.parent.name)
        with ThreadPoolExecutor(len(pid_files)) as pool:
            running = list(pool.map(lambda pid_file: processes.stop(pid_file, timeout_s=60), pid_files))
        return [name for name, was in zip(pid_files.values(), running, strict=True) if was]


def _cluster_id(settings: StackSettings, libs: Path) -> str:
    """One id for every node of the stack: the one a node was formatted with, or a new one."""
    for meta in sorted(settings.stack_dir.resolve().glob("kafka-*/data/meta.properties")):  # a cluster's
        if found := re.search(r"^cluster\.id=(\S+)", meta.read_text(), re.MULTILINE):
            return found[1]
    return (
        subprocess.run(
            ["java", "-cp", f"{libs}/*", "kafka.tools.StorageTool", "random-uuid"],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )


def _hint(broker: KafkaBroker) -> str:
    """When the port is this stack's other layout's (a cluster while KAFKA_BROKERS=1, or back)."""
    for pid_file in broker.settings.stack_dir.resolve().glob("kafka*/kafka.pid"):
        if pid_file != broker.pid_file and processes.running_pid(pid_file) is not None:
            return (
                f": this stack's {pid_file.parent.name} runs there; use the same KAFKA_BROKERS "
                "(or `cqrs stack down` first)"
            )
    return ""


def _port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0
