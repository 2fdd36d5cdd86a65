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
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property

import httpx
import pytest
from confluent_kafka.admin import AdminClient

from infra.kafka_broker import KafkaBroker, KafkaCluster
from infra.services import ServiceRunner, services
from infra.settings import StackSettings, TopicSettings
from schemas.kafka_security import kafka_config
from tests.faults.conftest import PrivateStack, stack_on, started
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


@dataclass
class Cluster:
    stack: PrivateStack
    runner: ServiceRunner

    @property
    def settings(self) -> StackSettings:
        return self.stack.settings

    @property
    def bootstrap(self) -> str:
        return self.stack.bootstrap

    @property
    def command_url(self) -> str:
        return self.stack.command_url

    @property
    def query_url(self) -> str:
        return self.stack.query_url

    def broker(self, node_id: int) -> KafkaBroker:
        return KafkaBroker(self.settings, node_id)

    @cached_property
    def admin(self) -> AdminClient:
        return AdminClient(kafka_config(self.bootstrap, log_level=0))


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    stack = stack_on(OFFSET, "cluster", brokers=3)
    topics = TopicSettings(kafka_bootstrap_servers=stack.bootstrap, kafka_brokers=3)
    assert (topics.topic_replication_factor, topics.topic_min_insync_replicas) == (3, 2)
    runner = ServiceRunner(
        stack.settings,
        env={
            **stack.service_env(),
            "KAFKA_BROKERS": "3",
            "TOPIC_PARTITIONS": "4",  # as the private stack's topics
            "PROCESSOR_INSTANCE_ID": PROCESSOR_INSTANCE,
        },
    )
    ports = (stack.command_api_port, stack.query_api_port, stack.projector_port)
    chosen = [s for s in services(*ports) if s.name in SERVICES]
    runner.stop_all(chosen)  # left behind by an interrupted run
    began = time.monotonic()
    with started(stack):
        print(f"\ncluster of 3 up with its topics in {time.monotonic() - began:.1f}s at {stack.bootstrap}")
        try:
            for service in chosen:
                runner.start(service)
                runner.wait_healthy(service, timeout_s=120)
            yield Cluster(stack, runner)
        finally:
            runner.stop_all(chosen)


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
