"""The command side under concurrency, crashes and stalls, against the real Kafka.

20,000 random commands over 200 accounts from four concurrent clients, with two processors
and a third joining later (and, in the crash variant, one of them SIGKILLed and restarted): every
account's versions are exactly 1..n, each balance equals the sum of its accepted commands, and no
balance ever went below its overdraft limit.
"""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Stack
from tests.support.kafka import Aggregate, CommandSender, Processor, read_topic, wait_for_results

pytestmark = pytest.mark.integration

ACCOUNTS, CLIENTS, COMMANDS_PER_CLIENT = 200, 4, 5000


def check_history(
    aggregate: Aggregate, sent: dict[str, tuple[str, str, int]], results: dict[str, list[dict[str, Any]]]
) -> dict[str, int]:
    """Asserts the guarantees; returns counts for the test's own report."""
    duplicated = {cid: r for cid, r in results.items() if len(r) != 1}
    assert not duplicated, f"{len(duplicated)} commands have more than one committed result"
    outcome = {cid: r[0] for cid, r in results.items()}

    history: dict[str, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    for partition, offset, _, event in read_topic(aggregate.bootstrap, f"events.{aggregate.name}"):
        history[event["aggregate_id"]].append((offset, event))
        result = outcome[event["command_id"]]
        assert result["status"] == "ACCEPTED", event
        assert result["version"] == event["version"]
        assert result["position"] == f"{partition}-{offset}"

    accepted = [cid for cid, r in outcome.items() if r["status"] == "ACCEPTED"]
    assert sum(len(h) for h in history.values()) == len(accepted), "one event per accepted command"
    for account_id, events in history.items():
        versions = [e["version"] for _, e in sorted(events, key=lambda item: item[0])]
        assert versions == list(range(1, len(versions) + 1)), f"{account_id}: {versions}"
        ordered = [e for _, e in sorted(events, key=lambda item: item[0])]
        limit, balance = ordered[0]["overdraft_limit"], 0
        for event in ordered[1:]:
            balance += event["amount"] if event["event_type"] == "MoneyDeposited" else -event["amount"]
            assert balance >= -limit, f"{account_id} went to {balance} below -{limit}"
        expected = sum(
            amount if kind == "DepositMoney" else -amount
            for cid, (acc, kind, amount) in sent.items()
            if acc == account_id and kind != "OpenAccount" and outcome[cid]["status"] == "ACCEPTED"
        )
        assert balance == expected, account_id
    rejected = {r["reason"] for r in outcome.values() if r["status"] == "REJECTED"}
    assert rejected <= {"insufficient_funds"}, rejected
    return {"accepted": len(accepted), "rejected": len(outcome) - len(accepted)}


@pytest.mark.parametrize("crash", [False, True], ids=["third-joins", "third-joins-and-one-is-killed"])
def test_versions_balances_and_limits_hold_under_concurrency(
    stack: Stack, unique: str, tmp_path: Path, crash: bool
) -> None:
    aggregate = Aggregate.create(stack.kafka_bootstrap_servers, unique)
    processors = [Processor(aggregate, f"p{i}", tmp_path) for i in range(3)]
    sent: dict[str, tuple[str, str, int]] = {}
    lock = threading.Lock()
    try:
        processors[0].start(), processors[1].start()
        processors[0].wait_assigned(), processors[1].wait_assigned()

        opener = CommandSender(aggregate)
        accounts = [f"a{unique}-{i}" for i in range(ACCOUNTS)]
        for account_id in accounts:
            cid = opener.send(
                "OpenAccount",
                account_id,
                {"owner_id": "o", "currency": "EUR", "overdraft_limit": random.randint(0, 500)},
            )
            sent[cid] = (account_id, "OpenAccount", 0)
        opener.flush()
        wait_for_results(stack.kafka_bootstrap_servers, aggregate, set(sent))

        def client(seed: int) -> None:
            rng, sender = random.Random(seed), CommandSender(aggregate)
            for n in range(COMMANDS_PER_CLIENT):
                account_id = rng.choice(accounts)
                kind = rng.choice(["DepositMoney", "WithdrawMoney"])
                amount = rng.randint(1, 1000)
                payload = {"amount": amount, "reference": None}
                if kind == "DepositMoney":
                    payload["channel"] = "test"
                cid = sender.send(kind, account_id, payload)
                with lock:
                    sent[cid] = (account_id, kind, amount)
                if n % 10 == 0:
                    time.sleep(0.02)  # about 2,000 commands/s in all: the chaos lands mid-stream
            sender.flush()

        threads = [threading.Thread(target=client, args=(seed,)) for seed in range(CLIENTS)]
        for t in threads:
            t.start()
        time.sleep(3)
        processors[2].start()  # a third member joins: partitions move while commands flow
        if crash:
            time.sleep(2)
            processors[0].kill()  # SIGKILL mid-transaction, most likely
            time.sleep(1)
            processors[0].start()
        for t in threads:
            t.join()
        results = wait_for_results(stack.kafka_bootstrap_servers, aggregate, set(sent), within_s=180)
        counts = check_history(aggregate, sent, results)
        assert counts["accepted"] > ACCOUNTS + 5000  # the load really exercised both outcomes
        assert counts["rejected"] > 100
        print(f"\n{counts} (crash={crash})")
    finally:
        for p in processors:
            p.stop()
