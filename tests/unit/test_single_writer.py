"""The single writer's batch logic without Kafka: a fake outbox stands in for the transactional
producer (it hands out offsets at flush, as the broker's acks do) and fake messages for commands."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from producers.aggregates import aggregate
from producers.engine.batch import Batch, PartitionState, SingleWriter
from producers.engine.idempotency import IdempotencyMemory
from schemas.codec import SingleObjectCodec
from schemas.keys import partition_for

codec = SingleObjectCodec()
PARTITIONS = 3


@dataclass
class Produced:
    topic: str
    key: Any
    value: Any
    partition: int
    headers: Any
    on_delivery: Any


@dataclass
class FakeOutbox:
    """Records what would be produced in the transaction; flush() acknowledges with offsets."""

    records: list[Produced] = field(default_factory=list)
    next_offsets: dict[tuple[str, int], int] = field(default_factory=dict)

    def produce(self, topic: str, *, value: Any = None, key: Any = None, partition: int = -1,
                on_delivery: Any = None, headers: Any = None) -> None:  # fmt: skip
        self.records.append(Produced(topic, key, value, partition, headers, on_delivery))

    def flush(self) -> None:
        for record in self.records:
            if record.on_delivery is not None:
                offset = self.next_offsets.get((record.topic, record.partition), 0)
                self.next_offsets[(record.topic, record.partition)] = offset + 1
                record.on_delivery(
                    None, FakeMessage(record.partition, offset, None, None, topic_name=record.topic)
                )
                record.on_delivery = None

    def decoded(self, topic: str) -> list[dict[str, Any]]:
        return [codec.decode(r.value).record for r in self.records if r.topic == topic]


@dataclass
class FakeMessage:
    part: int
    off: int
    k: bytes | None
    v: bytes | None
    hdrs: list[tuple[str, bytes]] | None = None
    topic_name: str = "commands.account"

    def partition(self) -> int:
        return self.part

    def offset(self) -> int:
        return self.off

    def key(self) -> bytes | None:
        return self.k

    def value(self) -> bytes | None:
        return self.v

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self.hdrs

    def topic(self) -> str:
        return self.topic_name


class Harness:
    def __init__(self, snapshot_every: int = 1000, remembered: int = 1000) -> None:
        self.outbox = FakeOutbox()
        self.writer = SingleWriter(aggregate("account"), codec, PARTITIONS, self.outbox, snapshot_every)
        self.writer.owned = {
            p: PartitionState(handled=IdempotencyMemory(limit=remembered)) for p in range(PARTITIONS)
        }
        self.offsets = dict.fromkeys(range(PARTITIONS), 0)

    def message(self, name: str, account: str, payload: dict[str, Any], *, command_id: str | None = None,
                partition: int | None = None) -> FakeMessage:  # fmt: skip
        command_id = command_id or str(uuid.uuid4())
        record = {"command_id": command_id, "aggregate_id": account, "expected_version": None,
                  "correlation_id": command_id, "issued_at": datetime.now(UTC), **payload}  # fmt: skip
        return self.raw(codec.encode(name, record), account, command_id, partition)

    def raw(
        self, value: bytes, key: str | None, command_id: str, partition: int | None = None
    ) -> FakeMessage:
        p = partition_for(key or "", PARTITIONS) if partition is None else partition
        self.offsets[p] += 1
        return FakeMessage(
            p, self.offsets[p], key.encode() if key else None, value, [("command_id", command_id.encode())]
        )

    def run(self, *messages: FakeMessage) -> Batch:
        """One transaction: handle, acks, results and snapshots, commit (merge)."""
        batch = Batch()
        for msg in messages:
            self.writer.handle(msg, batch)
        self.outbox.flush()
        self.writer.finish(batch)
        self.writer.merge(batch)
        return batch

    def results(self) -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {}
        for record in self.outbox.decoded("results.account"):
            found.setdefault(record["command_id"], []).append(record)
        return found


OPEN = {"owner_id": "o", "currency": "EUR", "overdraft_limit": 0}


def deposit(amount: int) -> dict[str, Any]:
    return {"amount": amount, "reference": None, "channel": "t"}


def test_events_results_and_positions_of_a_batch() -> None:
    h = Harness()
    opened, deposited = h.message("OpenAccount", "a1", OPEN), h.message("DepositMoney", "a1", deposit(5))
    h.run(opened, deposited)
    events = h.outbox.decoded("events.account")
    assert [(e["event_type"], e["version"], e["aggregate_type"]) for e in events] == [
        ("AccountOpened", 1, "account"), ("MoneyDeposited", 2, "account")
    ]  # fmt: skip
    results = h.results()
    p = partition_for("a1", PARTITIONS)
    assert [r[0]["version"] for r in results.values()] == [1, 2]
    assert [r[0]["position"] for r in results.values()] == [f"{p}-0", f"{p}-1"]


def test_a_repeated_command_replays_its_answer_and_a_reused_id_is_refused() -> None:
    h = Harness()
    h.run(h.message("OpenAccount", "a1", OPEN))
    first = h.message("DepositMoney", "a1", deposit(5), command_id="c1")
    h.run(first)
    h.run(h.message("DepositMoney", "a1", deposit(5), command_id="c1"))
    h.run(h.message("DepositMoney", "a1", deposit(6), command_id="c1"))
    answers = h.results()["c1"]
    assert [(a["status"], a["version"], a["reason"]) for a in answers] == [
        ("ACCEPTED", 2, None), ("ACCEPTED", 2, None), ("REJECTED", 2, "idempotency_key_reused")
    ]  # fmt: skip
    assert answers[0]["position"] == answers[1]["position"]
    assert len(h.outbox.decoded("events.account")) == 2  # no new event for the replay


def test_a_retry_whose_outcome_was_forgotten_is_decided_afresh_unless_it_expects_a_version() -> None:
    h = Harness(remembered=1)  # per partition: each command pushes the one before out
    h.run(h.message("OpenAccount", "a1", OPEN))
    h.run(h.message("DepositMoney", "a1", deposit(5), command_id="c1"))
    h.run(h.message("DepositMoney", "a1", deposit(5), command_id="c2"))
    h.run(h.message("DepositMoney", "a1", deposit(5), command_id="c2"))  # remembered: replayed
    assert [a["version"] for a in h.results()["c2"]] == [3, 3]
    h.run(h.message("DepositMoney", "a1", deposit(5), command_id="c1"))  # forgotten: applied again
    assert [a["version"] for a in h.results()["c1"]] == [2, 4]
    memory = h.writer.owned[partition_for("a1", PARTITIONS)].handled
    assert memory.forgotten == 3 and len(memory) == 1

    guarded = h.message("DepositMoney", "a1", deposit(5), command_id="c3")
    guarded.v = codec.encode("DepositMoney", codec.decode(guarded.v or b"").record | {"expected_version": 4})
    h.run(guarded)
    h.run(h.message("DepositMoney", "a1", deposit(5), command_id="c4"))  # c3 forgotten
    h.run(h.raw(guarded.v, "a1", "c3"))  # the late retry: refused, not applied twice
    answers = [(a["status"], a["version"], a["reason"]) for a in h.results()["c3"]]
    assert answers == [("ACCEPTED", 5, None), ("REJECTED", 6, "version_mismatch")]
    assert len(h.outbox.decoded("events.account")) == 6


def test_the_same_id_twice_in_one_batch_has_one_effect_and_one_answer_each() -> None:
    h = Harness()
    h.run(h.message("OpenAccount", "a1", OPEN))
    h.run(h.message("DepositMoney", "a1", deposit(5), command_id="c1"),
          h.message("DepositMoney", "a1", deposit(5), command_id="c1"))  # fmt: skip
    answers = h.results()["c1"]
    assert [(a["status"], a["version"]) for a in answers] == [("ACCEPTED", 2), ("ACCEPTED", 2)]
    assert answers[0]["position"] == answers[1]["position"] is not None
    assert len(h.outbox.decoded("events.account")) == 2


def test_a_misrouted_command_is_passed_to_its_partition_and_answered_there() -> None:
    h = Harness()
    h.run(h.message("OpenAccount", "a1", OPEN))
    home = partition_for("a1", PARTITIONS)
    wrong = (home + 1) % PARTITIONS
    h.run(h.message("DepositMoney", "a1", deposit(5), command_id="m1", partition=wrong))
    (forwarded,) = [r for r in h.outbox.records if r.topic == "commands.account"]
    assert forwarded.partition == home and ("misrouted_from", str(wrong).encode()) in forwarded.headers
    assert "m1" not in h.results()  # answered by the home partition's writer, not here
    h.run(FakeMessage(home, 99, forwarded.key, forwarded.value, forwarded.headers))
    (answer,) = h.results()["m1"]
    assert (answer["reason"], answer["reason_code"], answer["version"]) == ("wrong_partition",) * 2 + (1,)


def test_an_unreadable_command_is_answered_under_its_header_id_with_the_real_version() -> None:
    h = Harness()
    h.run(h.message("OpenAccount", "a1", OPEN))
    h.run(h.raw(b"\xc3\x01" + b"\x00" * 8 + b"junk", "a1", "bad-1"))
    (answer,) = h.results()["bad-1"]
    assert (answer["status"], answer["reason"], answer["version"]) == ("REJECTED", "malformed_command", 1)
    assert answer["aggregate_id"] == "a1"


def test_snapshots_and_a_checkpoint_every_n_events() -> None:
    h = Harness(snapshot_every=3)
    account = next(f"s{n}" for n in range(100) if partition_for(f"s{n}", PARTITIONS) == 0)
    h.run(h.message("OpenAccount", account, OPEN), h.message("DepositMoney", account, deposit(7)))
    assert not [r for r in h.outbox.records if r.topic == "snapshots.account"]
    h.run(h.message("DepositMoney", account, deposit(8)))
    snapshots = [r for r in h.outbox.records if r.topic == "snapshots.account"]
    assert [r.key for r in snapshots] == [account, "_checkpoint.0"]
    state = codec.decode(snapshots[0].value).record
    assert (state["version"], state["balance"], state["currency"]) == (3, 15, "EUR")
    assert codec.decode(snapshots[1].value).record["events_offset"] == 3  # after the third event


def test_every_event_records_the_actor_its_command_named() -> None:
    h = Harness()
    opened = h.message("OpenAccount", "a1", OPEN)
    opened.hdrs = [*(opened.hdrs or []), ("actor", b"teller-7")]
    deposited = h.message("DepositMoney", "a1", deposit(5))
    deposited.hdrs = [*(deposited.hdrs or []), ("actor", b"o-app"), ("actor_owner_id", b"o")]
    anonymous = h.message("DepositMoney", "a1", deposit(1))
    h.run(opened, deposited, anonymous)
    events = h.outbox.decoded("events.account")
    assert [(e["actor"], e["actor_owner_id"]) for e in events] == [
        ("teller-7", None), ("o-app", "o"), (None, None)
    ]  # fmt: skip


def test_a_customer_is_refused_on_an_account_it_does_not_own() -> None:
    h = Harness()
    h.run(h.message("OpenAccount", "a1", OPEN))  # owner o
    theft = h.message("WithdrawMoney", "a1", {"amount": 5, "reference": None}, command_id="c-theft")
    theft.hdrs = [*(theft.hdrs or []), ("actor", b"mallory"), ("actor_owner_id", b"m")]
    h.run(theft)
    (result,) = h.results()["c-theft"]
    assert (result["status"], result["reason"], result["reason_code"]) == (
        "REJECTED",
        "not_owner",
        "not_owner",
    )
    assert len(h.outbox.decoded("events.account")) == 1


def test_event_ids_are_random_version_4_uuids_as_text() -> None:
    from producers.engine.batch import new_event_id

    ids = [new_event_id() for _ in range(1000)]  # more than one refill
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_a_forked_child_does_not_hand_out_its_parents_pooled_ids() -> None:
    from producers.engine.batch import new_event_id

    new_event_id()  # the pool is filled: the next ids are known to this process
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child
        os.write(write, new_event_id().encode())
        os._exit(0)
    os.waitpid(child, 0)
    assert os.read(read, 64).decode() != new_event_id()
