"""Another team's Java system, built with Maven from Maven Central, speaks the contract: Avro 1.12's own
single-object classes (BinaryMessageEncoder/Decoder, SchemaStore on GET /schemas/{fingerprint}) and
the Kafka Java client, against the running stack. It knows only schemas/avro, tests/golden and
schemas/README.md; this test re-checks its JSON summary on the Python side."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition

from schemas.kafka_security import kafka_config
from schemas.keys import event_key, partition_for
from tests.conftest import Stack
from tests.e2e.conftest import QUERY_PORT, Services
from tests.support.principals import security_of
from tests.support.tokens import bearer

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).parents[2]
PROJECT = ROOT / "tests" / "java"
SCHEMAS = ROOT / "schemas" / "avro"
GOLDEN = ROOT / "tests" / "golden"
REGISTERED = PROJECT / "registered" / "DepositMoney.v3.avsc"
CQRS = Path(sys.executable).parent / "cqrs"
ACCEPTED = ("a", "b", "c", "j")


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"`{name}` is not on PATH: the Java contract test needs a JDK 17+ and Maven")
    return found


@pytest.fixture(scope="module")
def built() -> Path:
    """`mvn package` once per run (incremental; the first run downloads from Maven Central)."""
    mvn = tool("mvn")
    tool("java")
    started = time.monotonic()
    build = subprocess.run(
        [mvn, "-q", "-B", "-f", str(PROJECT / "pom.xml"), "package", "-DskipTests"],
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert build.returncode == 0, f"mvn package failed:\n{build.stdout[-4000:]}\n{build.stderr[-4000:]}"
    print(f"mvn package took {time.monotonic() - started:.1f}s")
    return PROJECT / "target"


def register(stack: Stack) -> None:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap_servers}
    run = subprocess.run(
        [str(CQRS), "schemas", "register", str(REGISTERED)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    print(run.stdout, run.stderr)
    assert run.returncode == 0, f"cqrs schemas register failed:\n{run.stdout}\n{run.stderr}"


def run_client(stack: Stack, target: Path, client_config: Path | None) -> dict[str, Any]:
    # The Java client is another team's system: it connects as `other-system` (its properties file).
    env = {**os.environ, **({"KAFKA_CLIENT_CONFIG": str(client_config)} if client_config else {})}
    run = subprocess.run(
        [
            tool("java"),
            "-cp",
            f"{target / 'classes'}{os.pathsep}{target / 'libs'}/*",
            "contract.ContractClient",
            stack.kafka_bootstrap_servers,
            f"http://127.0.0.1:{QUERY_PORT}",
            str(SCHEMAS),
            str(GOLDEN),
            str(REGISTERED),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    print(run.stdout)
    assert run.returncode == 0, (
        f"the Java client failed ({run.returncode}):\n{run.stdout[-6000:]}\n{run.stderr[-4000:]}"
    )
    summary: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    return summary


def read_at(bootstrap: str, partition: int, offset: int) -> tuple[str, bytes]:
    consumer = Consumer(
        {
            **kafka_config(bootstrap),
            "group.id": "java-contract-check",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    try:
        consumer.assign([TopicPartition("events.account", partition, offset)])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error():
                assert msg.offset() == offset, (
                    f"events.account[{partition}]@{offset} is not a committed event"
                )
                key, value = msg.key(), msg.value()
                assert key is not None and value is not None
                return key.decode(), value
        raise AssertionError(f"nothing read at events.account[{partition}]@{offset}")
    finally:
        consumer.close()


@pytest.mark.timeout(600)
def test_a_java_avro_and_kafka_client_speaks_the_contract(
    stack: Stack, running: Services, built: Path, tmp_path: Path
) -> None:
    register(stack)
    register(stack)  # a second registration of the same file is a no-op, not an error
    other_system = security_of("other-system")
    client_config = tmp_path / "other-system.properties" if other_system else None
    if other_system and client_config:
        client_config.write_text(other_system.java_properties())
    seen = run_client(stack, built, client_config)
    assert seen["ok"] is True, seen.get("failure")
    if other_system:
        assert seen["forged_event_refused"] == "TopicAuthorizationException"

    account, p, results = seen["account_id"], seen["partition"], seen["results"]
    assert seen["partitions"] == 12
    assert p == partition_for(account, 12)

    def status(step: str) -> tuple[str, int | None, str | None, str | None]:
        r = results[step]
        return r["status"], r["version"], r["reason"], r["reason_code"]

    assert status("a") == ("ACCEPTED", 1, None, None)
    assert status("b") == ("ACCEPTED", 2, None, None)
    assert status("c") == ("ACCEPTED", 3, None, None)
    assert status("d") == ("REJECTED", 3, "insufficient_funds", "insufficient_funds")
    assert status("e") == ("ACCEPTED", 2, None, None)
    assert results["e"]["position"] == results["b"]["position"]
    assert results["e"]["command_id"] == results["f"]["command_id"] == results["b"]["command_id"]
    assert status("f") == ("REJECTED", 3, "idempotency_key_reused", "idempotency_key_reused")
    # an account that does not exist is at version 0
    assert status("g") == ("REJECTED", 0, "invalid_overdraft_limit", "invalid_overdraft_limit")
    assert status("h") == ("REJECTED", 3, "malformed_command", "malformed_command")
    assert status("i") == ("REJECTED", 3, "wrong_partition", "wrong_partition")
    assert status("j") == ("ACCEPTED", 4, None, None)
    # Java's default partitioner placed every command (but i, sent elsewhere on purpose) on the
    # murmur2 partition, and every result came back on the aggregate's partition.
    for step, result in results.items():
        aggregate = account if step != "g" else result["aggregate_id"]
        home = partition_for(aggregate, 12)
        assert result["partition"] == home, step
        assert seen["sent_partitions"][step] == (home if step != "i" else (p + 1) % 12), step

    events = seen["events"]
    assert [e["version"] for e in events] == [1, 2, 3, 4]
    assert [e["type"] for e in events] == ["AccountOpened"] + ["MoneyDeposited"] * 3
    assert [e["amount"] for e in events] == [None, 500, 250, 40]
    assert events[2]["channel"] == "java"
    assert [e["command_id"] for e in events] == [results[s]["command_id"] for s in ACCEPTED]

    # Again from Kafka, without the Java client: each accepted position holds that version's event,
    # and its writer schema is served by the query API.
    with httpx.Client(base_url=f"http://127.0.0.1:{QUERY_PORT}", timeout=10, headers=bearer()) as queries:
        for version, step in enumerate(ACCEPTED, start=1):
            partition, offset = map(int, results[step]["position"].split("-"))
            assert partition == p
            key, value = read_at(stack.kafka_bootstrap_servers, partition, offset)
            assert key == event_key(account, version)
            assert value[:2] == b"\xc3\x01"
            writer = queries.get(f"/schemas/{value[2:10].hex()}")
            assert writer.status_code == 200
            assert writer.json()["name"].split(".")[-1] == events[version - 1]["type"]
        view = queries.get(
            f"/accounts/{account}", params={"after": results["j"]["position"], "wait_ms": 10_000}
        )
        assert view.status_code == 200, view.text
        assert (view.json()["balance"], view.json()["version"], view.json()["currency"]) == (790, 4, "CHF")
        # g's account was never opened
        assert queries.get(f"/accounts/{results['g']['aggregate_id']}").status_code == 404

    golden = seen["golden"]
    files = len(list(GOLDEN.glob("*.bin")))
    assert golden == {"decoded": files, "byte_identical": files, "decoded_as_v1": files}
    fetched = {name.split("@")[0] for name in seen["store_fetches_live"]}
    assert {"bank.common.CommandResult", "bank.account.events.MoneyDeposited"} <= fetched
    assert seen["schemas_fetched_from_store"] >= 2
