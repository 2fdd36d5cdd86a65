"""Every command gets an answer its sender can find: keyed by its command id (from the header when
the value cannot be read), on its aggregate's partition, with the aggregate's real version; the
domain's limits hold for commands from the topic; a newer schema registered at run time is read
without a redeploy; answers that are not a command's outcome are never replayed for its id."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from schemas.codec import SingleObjectCodec
from schemas.kafka_security import kafka_config
from schemas.keys import partition_for
from schemas.registry import SchemaRegistry
from schemas.schema_log import SchemaLog
from tests.conftest import Stack
from tests.support.kafka import Aggregate, CommandSender, Processor, read_topic

pytestmark = pytest.mark.integration


def results_by_id(
    aggregate: Aggregate, ids: set[str], within_s: float = 60
) -> dict[str, list[tuple[int, dict[str, Any]]]]:
    """(partition, result) per command id, once every id has one."""
    deadline = time.monotonic() + within_s
    while True:
        found: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        for partition, _, key, record in read_topic(aggregate.bootstrap, f"results.{aggregate.name}"):
            assert key == record["command_id"].encode()
            found.setdefault(record["command_id"], []).append((partition, record))
        if ids <= set(found):
            return found
        assert time.monotonic() < deadline, f"no result for {ids - set(found)}"
        time.sleep(0.5)


def command(aggregate_id: str, command_id: str, **payload: Any) -> dict[str, Any]:
    return {
        "command_id": command_id,
        "aggregate_id": aggregate_id,
        "expected_version": None,
        "correlation_id": command_id,
        "issued_at": datetime.now(UTC),
        **payload,
    }


@pytest.fixture
def processor(stack: Stack, unique: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    aggregate = Aggregate.create(stack.kafka_bootstrap_servers, unique)
    running = Processor(aggregate, f"answers-{unique}", tmp_path).start()
    running.wait_assigned()
    yield aggregate, running
    running.stop()


def test_misrouted_and_unreadable_commands_are_answered_on_the_aggregates_partition(processor) -> None:  # type: ignore[no-untyped-def]
    aggregate, running = processor
    sender, raw = CommandSender(aggregate), Producer(kafka_config(aggregate.bootstrap))
    account = f"acc-{uuid.uuid4()}"
    home = partition_for(account, aggregate.partitions)
    wrong = (home + 1) % aggregate.partitions
    opened = sender.send("OpenAccount", account, {"owner_id": "o", "currency": "EUR", "overdraft_limit": 0})
    deposited = sender.send("DepositMoney", account, {"amount": 5, "reference": None, "channel": "t"})
    sender.flush()
    results_by_id(aggregate, {opened, deposited})

    codec = SingleObjectCodec()
    misrouted, garbage, garbage_elsewhere, keyless = (str(uuid.uuid4()) for _ in range(4))
    deposit = codec.encode("DepositMoney", command(account, misrouted, amount=7, reference=None, channel="t"))
    frames = [
        (misrouted, wrong, account, deposit),
        (garbage, home, account, b"\xc3\x01" + b"\x00" * 8 + b"junk"),
        (garbage_elsewhere, wrong, account, b"not avro at all"),
        (keyless, wrong, None, b"\x00"),
    ]
    for command_id, partition, key, value in frames:
        raw.produce(
            f"commands.{aggregate.name}",
            key=key,
            value=value,
            partition=partition,
            headers=[("command_id", command_id.encode())],
        )
    assert raw.flush(10) == 0
    found = results_by_id(aggregate, {misrouted, garbage, garbage_elsewhere, keyless})

    for command_id, reason in ((misrouted, "wrong_partition"), (garbage, "malformed_command"),
                               (garbage_elsewhere, "malformed_command")):  # fmt: skip
        ((partition, result),) = found[command_id]
        assert partition == home, command_id  # where the contract says to look
        assert (result["status"], result["reason"], result["reason_code"]) == ("REJECTED", reason, reason)
        assert result["version"] == 2 and result["aggregate_id"] == account  # the real current version
    assert f"sent to partition {wrong}" in found[misrouted][0][1]["detail"]
    ((partition, result),) = found[keyless]  # no key: no aggregate to name, answered where it was sent
    assert (partition, result["reason"], result["version"]) == (wrong, "malformed_command", None)

    # A wrong_partition answer is not the command's outcome: the same command sent right is decided,
    # also by a processor that reloaded its partitions from the results topic.
    running.stop()
    restarted = Processor(aggregate, f"{running.instance}-2", running.log.parent).start()
    try:
        restarted.wait_assigned()
        raw.produce(f"commands.{aggregate.name}", key=account, value=deposit, partition=home)
        assert raw.flush(10) == 0
        deadline = time.monotonic() + 60
        while len(results_by_id(aggregate, {misrouted})[misrouted]) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.5)
        (_, second) = results_by_id(aggregate, {misrouted})[misrouted][1]
        assert (second["status"], second["version"]) == ("ACCEPTED", 3)
    finally:
        restarted.stop()


def test_a_reused_id_answer_is_not_remembered_as_the_commands_outcome(processor) -> None:  # type: ignore[no-untyped-def]
    aggregate, running = processor
    sender = CommandSender(aggregate)
    account = f"acc-{uuid.uuid4()}"
    sender.send("OpenAccount", account, {"owner_id": "o", "currency": "EUR", "overdraft_limit": 0})
    first = sender.send("DepositMoney", account, {"amount": 5, "reference": None, "channel": "t"})
    sender.send("DepositMoney", account, {"amount": 6, "reference": None, "channel": "t"}, command_id=first)
    sender.flush()
    found = results_by_id(aggregate, {first})
    deadline = time.monotonic() + 30
    while len(found[first]) < 2:
        assert time.monotonic() < deadline
        found = results_by_id(aggregate, {first})
    assert [r["reason"] for _, r in found[first]] == [None, "idempotency_key_reused"]

    running.stop()  # the next owner rebuilds its idempotency memory from the results topic
    restarted = Processor(aggregate, f"{running.instance}-2", running.log.parent).start()
    try:
        restarted.wait_assigned()
        sender.send(
            "DepositMoney", account, {"amount": 5, "reference": None, "channel": "t"}, command_id=first
        )
        sender.flush()
        while len(found[first]) < 3:
            assert time.monotonic() < deadline + 30
            found = results_by_id(aggregate, {first})
        (_, original), (_, again) = found[first][0], found[first][2]
        assert (again["status"], again["version"], again["position"]) == (
            "ACCEPTED", original["version"], original["position"]
        )  # fmt: skip
    finally:
        restarted.stop()


def test_the_domain_limits_hold_for_commands_from_the_topic(processor) -> None:  # type: ignore[no-untyped-def]
    aggregate, _ = processor
    sender = CommandSender(aggregate)
    huge, fine = f"acc-{uuid.uuid4()}", f"acc-{uuid.uuid4()}"
    refused = sender.send("OpenAccount", huge, {"owner_id": "o", "currency": "EUR", "overdraft_limit": 2**62})
    opened = sender.send("OpenAccount", fine, {"owner_id": "o", "currency": "EUR", "overdraft_limit": 100})
    debit = sender.send("WithdrawMoney", fine, {"amount": 2**62 + 1, "reference": None})
    sender.flush()
    found = results_by_id(aggregate, {refused, opened, debit})
    assert found[refused][0][1]["reason_code"] == "invalid_overdraft_limit"
    assert found[refused][0][1]["version"] == 0  # the account does not exist: version 0 is the truth
    assert found[opened][0][1]["status"] == "ACCEPTED"
    assert found[debit][0][1]["reason_code"] == "invalid_amount"


def test_a_schema_registered_at_run_time_is_read_without_a_restart(processor) -> None:  # type: ignore[no-untyped-def]
    aggregate, _ = processor
    registry = SchemaRegistry()
    released = registry.latest("DepositMoney")
    newer = json.loads(json.dumps(released.raw))
    newer["fields"].append({"name": "teller_note", "type": "string", "default": ""})
    schema_log = SchemaLog(aggregate.bootstrap, registry)
    try:
        registered, _ = schema_log.register(newer)
        bad = json.loads(json.dumps(newer))
        bad["fields"].append({"name": "branch", "type": "string"})
        with pytest.raises(ValueError, match=r"DepositMoney\.branch: missing_default"):
            schema_log.register(bad)
    finally:
        schema_log.close()
    assert registered.origin == "registered" and registered.version > released.version

    sender = CommandSender(aggregate)
    account = f"acc-{uuid.uuid4()}"
    opened = sender.send("OpenAccount", account, {"owner_id": "o", "currency": "EUR", "overdraft_limit": 0})
    sender.flush()
    command_id = str(uuid.uuid4())
    frame = SingleObjectCodec(registry).encode_as(
        registered, command(account, command_id, amount=42, reference=None, channel="t", teller_note="hi")
    )
    raw = Producer(kafka_config(aggregate.bootstrap))
    raw.produce(f"commands.{aggregate.name}", key=account, value=frame,
                partition=partition_for(account, aggregate.partitions))  # fmt: skip
    assert raw.flush(10) == 0
    found = results_by_id(aggregate, {opened, command_id})
    assert found[command_id][0][1]["status"] == "ACCEPTED", found[command_id]
    events = [e for _, _, _, e in read_topic(aggregate.bootstrap, f"events.{aggregate.name}")]
    assert [e["amount"] for e in events if e["aggregate_id"] == account and e["version"] == 2] == [42]
