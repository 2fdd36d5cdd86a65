"""A broker of a three-node KRaft cluster (replication factor 3, min ISR 2) SIGKILLed under load and
started again 15 s later: the pipeline (command API, command processor, projector, query API) goes
on with the two others after the leader election, and nothing acknowledged is lost or applied twice.

Its own stack, never the session's: the cluster on the session's Kafka port + CLUSTER_PORT_OFFSET
(default 300; the nodes on that, +10 and +20), Redis and the services on theirs + the same offset,
data in `<STACK_DIR>-cluster`. The broker killed is the transaction coordinator of the command
processor (it leads that partition of __transaction_state), so its transaction has to move too.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import httpx
import pytest
from confluent_kafka.admin import AdminClient

from infra import credentials
from infra import stack as local_stack
from infra.kafka_broker import KafkaBroker, KafkaCluster
from infra.services import ServiceRunner, services
from infra.settings import StackSettings, TopicSettings
from infra.topics import ensure_topics, publish_released_schemas
from schemas.kafka_security import kafka_config
from tests.faults.workload import Load, check, open_accounts
from tests.support.tokens import bearer

pytestmark = [pytest.mark.faults, pytest.mark.full_faults, pytest.mark.timeout(900)]

OFFSET = int(os.environ.get("CLUSTER_PORT_OFFSET", "300"))
STAFF = bearer()
PROCESSOR_INSTANCE = "cluster-test"  # a known transactional id, to find its coordinator
SERVICES = ("query-api", "projector", "command-processor-account", "command-api")
SERVICE = {s.name: s for s in services()}  # by name (for its log file; the ports do not matter)
FENCED = "fatal producer error"  # what the processor logs when it replaces its producer
WATCHED = ("commands.account", "events.account", "results.account", "__transaction_state",
           "__consumer_offsets")  # fmt: skip
TRANSACTION_STATE_PARTITIONS = 12  # transaction.state.log.num.partitions (infra/kafka_broker.py)


def _port(variable: str, default: int) -> int:
    return int(os.environ.get(variable, str(default))) + OFFSET


@dataclass
class Cluster:
    settings: StackSettings
    runner: ServiceRunner
    command_url: str
    query_url: str

    @property
    def bootstrap(self) -> str:
        return self.settings.bootstrap_servers

    def broker(self, node_id: int) -> KafkaBroker:
        return KafkaBroker(self.settings, node_id)

    @cached_property
    def admin(self) -> AdminClient:
        return AdminClient(kafka_config(self.bootstrap, log_level=0))


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    session = StackSettings(  # the session's stack (`make test`: 19092, 16379), from the environment
        kafka_bootstrap_servers=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092"),
        redis_url=os.environ.get("REDIS_URL", "redis://127.0.0.1:16379/0"),
    )
    kafka_port, redis_port = session.kafka_host_port[1] + OFFSET, session.redis_host_port[1] + OFFSET
    settings = StackSettings(
        stack_dir=Path(f"{os.environ.get('STACK_DIR', '.stack/test')}-cluster"),
        kafka_bootstrap_servers=f"127.0.0.1:{kafka_port}",
        kafka_controller_port=kafka_port + 1,
        redis_url=f"redis://127.0.0.1:{redis_port}/0",
        kafka_brokers=3,
    )
    ports = {
        "COMMAND_API_PORT": _port("COMMAND_API_PORT", 18001),
        "QUERY_API_PORT": _port("QUERY_API_PORT", 18002),
        "PROJECTOR_METRICS_PORT": _port("PROJECTOR_METRICS_PORT", 18011),
    }
    runner = ServiceRunner(
        settings,
        env={
            "STACK_DIR": str(settings.stack_dir),
            "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            "KAFKA_BROKERS": "3",
            "REDIS_URL": settings.redis_url,
            **{name: str(port) for name, port in ports.items()},
            "TOPIC_PARTITIONS": "4",  # as the topics below
            "PROCESSOR_INSTANCE_ID": PROCESSOR_INSTANCE,
        },
    )
    chosen = [s for s in services(*ports.values()) if s.name in SERVICES]
    with pytest.MonkeyPatch.context() as env:
        try:
            runner.stop_all(chosen)  # left behind by an interrupted run
            local_stack.down(settings)
            home = settings.stack_dir.resolve()  # fresh data every run, as tests/faults/conftest.py
            for folder in [*home.glob("kafka-*/data"), home / "redis" / "appendonlydir"]:
                shutil.rmtree(folder, ignore_errors=True)
            (home / "redis" / "dump.rdb").unlink(missing_ok=True)
            began = time.monotonic()
            local_stack.up(settings)
            print(f"\ncluster of 3 up in {time.monotonic() - began:.1f}s at {settings.bootstrap_servers}")
            passwords = credentials.ensure(settings.stack_dir)
            operator = credentials.client_env(
                credentials.OPERATOR, passwords[credentials.OPERATOR], settings.redis_url
            )
            for name, value in operator.items():
                env.setenv(name, value)
            topics = TopicSettings(kafka_bootstrap_servers=settings.bootstrap_servers, kafka_brokers=3,
                                   topic_partitions=4)  # fmt: skip
            assert (topics.topic_replication_factor, topics.topic_min_insync_replicas) == (3, 2)
            ensure_topics(topics)
            publish_released_schemas(topics)
            for service in chosen:
                runner.start(service)
                runner.wait_healthy(service, timeout_s=120)
            yield Cluster(
                settings,
                runner,
                f"http://127.0.0.1:{ports['COMMAND_API_PORT']}",
                f"http://127.0.0.1:{ports['QUERY_API_PORT']}",
            )
        finally:
            runner.stop_all(chosen)
            local_stack.down(settings)


def _java_hash(text: str) -> int:
    """String.hashCode(), as Kafka's coordinators place a transactional id or a group."""
    value = 0
    for char in text:
        value = (31 * value + ord(char)) & 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def transaction_coordinator(cluster: Cluster) -> int:
    """The node leading the __transaction_state partition of the command processor's id."""
    transactional_id = f"command-processor.account.{PROCESSOR_INSTANCE}"
    partition = abs(_java_hash(transactional_id)) % TRANSACTION_STATE_PARTITIONS
    topic = cluster.admin.list_topics("__transaction_state", timeout=10).topics["__transaction_state"]
    return int(topic.partitions[partition].leader)


def partitions_of(cluster: Cluster, node: int) -> tuple[int, int]:
    """(partitions it leads, partitions whose ISR has it) among the watched topics."""
    topics = cluster.admin.list_topics(timeout=5).topics
    parts = [p for name in WATCHED if name in topics for p in topics[name].partitions.values()]
    return sum(p.leader == node for p in parts), sum(node in p.isrs for p in parts)


def failover(cluster: Cluster, victim: int, within_s: float = 60) -> tuple[float, float]:
    """Seconds until no watched partition is led by `victim` (the election), and until no ISR
    has it (from then on, acks=all needs only the two others)."""
    began = time.monotonic()
    led_elsewhere = out_of_isr = None
    while led_elsewhere is None or out_of_isr is None:
        try:
            leads, in_isr = partitions_of(cluster, victim)
        except Exception:  # metadata from a broker that is not there: ask again
            leads = in_isr = -1
        took = time.monotonic() - began
        led_elsewhere = took if led_elsewhere is None and leads == 0 else led_elsewhere
        out_of_isr = took if out_of_isr is None and in_isr == 0 else out_of_isr
        assert took < within_s, f"node {victim} still leads {leads}, is in {in_isr} ISRs after {took:.0f}s"
        time.sleep(0.1)
    return led_elsewhere, out_of_isr


def wait_until(what: str, condition: Callable[[], bool], within_s: float) -> float:
    """Seconds until `condition()` holds (metadata errors while a broker is down: ask again)."""
    began = time.monotonic()
    while True:
        try:
            if condition():
                return time.monotonic() - began
        except Exception:
            pass
        assert time.monotonic() - began < within_s, f"{what}: not within {within_s}s"
        time.sleep(0.1)


def wait_serving(cluster: Cluster, within_s: float = 120) -> None:
    """The command processor decides commands (a first one after a start waits for its
    partitions) and the accounts view shows them: one account opened, retried with one key, then
    read. (Not /readyz: it waits for every view, and only the accounts projector runs here.)"""
    deadline = time.monotonic() + within_s
    answer, account = "no answer", None
    with httpx.Client(headers=STAFF, timeout=15) as client:
        while True:
            try:
                if account is None:
                    opened = client.post(
                        f"{cluster.command_url}/accounts",
                        json={"owner_id": "cluster-probe", "currency": "EUR"},
                        headers={"Idempotency-Key": "cluster-readiness-probe"},
                    )
                    answer = f"open account: {opened.status_code} {opened.text[:200]}"
                    if opened.status_code in (200, 201):  # 200: the same key's answer again
                        account = opened.json()["account_id"]
                if account is not None:
                    read = client.get(f"{cluster.query_url}/accounts/{account}")
                    answer = f"read account: {read.status_code} {read.text[:200]}"
                    if read.status_code == 200:
                        return
            except httpx.HTTPError as exc:
                answer = repr(exc)
            assert time.monotonic() < deadline, f"the pipeline did not start serving: {answer}"
            time.sleep(0.5)


def test_a_broker_crash_loses_nothing_and_barely_pauses(cluster: Cluster, unique: str) -> None:
    began = time.monotonic()
    wait_serving(cluster)
    accounts = open_accounts(cluster.command_url, STAFF, 8, f"cluster-{unique}")
    victim = transaction_coordinator(cluster)
    leads, in_isr = partitions_of(cluster, victim)
    with Load(cluster.command_url, cluster.bootstrap, STAFF, accounts, rate=20) as load:
        time.sleep(5)  # steady before the fault
        broker = cluster.broker(victim)
        pid = broker.pid()
        assert pid is not None
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        led_elsewhere, out_of_isr = failover(cluster, victim)
        time.sleep(max(0.0, killed_at + 15 - time.monotonic()))
        restarted_at = time.monotonic()
        broker.start(timeout_s=120)  # answers once it has caught up with the metadata, unfenced
        back_at = time.monotonic()
        back_in_isr = wait_until(
            "the restarted broker back in every ISR",
            lambda: partitions_of(cluster, victim)[1] == in_isr,
            within_s=120,
        )
        load.wait_acked(20, after=time.monotonic(), within_s=60)
        time.sleep(10)  # steady after it
    tally = check(cluster.bootstrap, load, cluster.query_url, STAFF)
    elected_at = killed_at + led_elsewhere
    while_down = sum(1 for d in load.deposits if d.acked_at and elected_at < d.acked_at < back_at)
    fenced = cluster.runner.log_file(SERVICE["command-processor-account"]).read_text().count(FENCED)
    print(
        f"\nnode {victim} (transaction coordinator of the processor; leader of {leads} and in the ISR "
        f"of {in_isr} partitions of {', '.join(WATCHED)}) SIGKILLed, started again "
        f"{restarted_at - killed_at:.1f}s later\n"
        f"  after the kill: its partitions led by the others in {led_elsewhere:.1f}s, it was out of "
        f"every ISR in {out_of_isr:.1f}s; {while_down} deposits acknowledged from then until it was back\n"
        f"  restarted: answering (unfenced) after {back_at - restarted_at:.1f}s, back in every ISR "
        f"{back_in_isr:.1f}s after that; the processor replaced its producer {fenced} times\n"
        f"  {tally.line('load at 20/s, half HTTP, half Kafka')}\n"
        f"  test took {time.monotonic() - began:.0f}s (after the cluster and the services were up)"
    )
    assert (tally.lost, tally.applied_twice) == (0, 0), tally
    assert tally.longest_gap_s < 30, f"the pipeline paused for {tally.longest_gap_s:.1f}s"
    assert while_down > 0, "nothing was acknowledged while the broker was down"
    assert KafkaCluster(cluster.settings).broker(victim).pid() is not None
