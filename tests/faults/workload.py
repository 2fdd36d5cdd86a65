"""A steady load of deposits while a fault is injected, and the invariants checked after it.

Half the deposits go through the command API (each with its own Idempotency-Key, retried with that
key after a 5xx or a lost connection, as a client is told to), half as DepositMoney commands on
commands.account (as another system sends them; acknowledged when Kafka acknowledges the record).
Every deposit carries a unique reference, so the log says exactly which deposits it holds.

After the fault: every acknowledged deposit is in the log exactly once, nothing is there twice,
every account's versions are 1..n with no gap, each balance is the sum of its deposits, and the
accounts view says the same as the log.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

import httpx
from confluent_kafka import KafkaError, Message, Producer

from schemas.headers import COMMAND_ID_HEADER
from schemas.kafka_security import kafka_config
from schemas.keys import partition_for
from tests.support.kafka import codec, read_topic

RETRYABLE = (502, 503, 504)


@dataclass
class Deposit:
    reference: str
    account: str
    amount: int
    via: str  # "http" or "kafka"
    sent_at: float
    acked_at: float | None = None  # a 2xx answer, or Kafka's acknowledgment of the record
    failed_answers: Counter[str] = field(default_factory=Counter)  # "503 broker_unavailable", "timeout" ...
    refused: str | None = None  # a 4xx: the command is not applied


@dataclass
class Tally:
    """What one fault case did to the clients, and what the log says after it."""

    sent: int = 0
    acked: int = 0
    lost: int = 0  # acknowledged, not in the log
    applied_twice: int = 0
    unsettled: int = 0  # never acknowledged (a Kafka record not delivered, an HTTP retry run out)
    unsettled_applied: int = 0  # of those, in the log (once)
    failed_answers: Counter[str] = field(default_factory=Counter)
    longest_gap_s: float = 0.0  # the longest time with no deposit acknowledged: what clients saw

    def line(self, case: str) -> str:
        return (
            f"{case}: sent {self.sent}, acknowledged {self.acked}, lost {self.lost}, applied twice "
            f"{self.applied_twice}, unacknowledged {self.unsettled} ({self.unsettled_applied} of them "
            f"applied once); longest wait for an acknowledgment {self.longest_gap_s:.1f}s; "
            f"answers on the way: {dict(self.failed_answers)}"
        )


class Load:
    """Deposits at `rate` per second over `accounts`, until stop(); then every HTTP deposit is
    retried with its key until it has a final answer (or `settle_s` passes)."""

    def __init__(
        self,
        command_url: str,
        bootstrap: str,
        headers: dict[str, str],
        accounts: list[str],
        *,
        rate: float = 40,
        settle_s: float = 180,
    ) -> None:
        self.command_url, self.headers, self.accounts = command_url, headers, accounts
        self.rate, self.settle_s = rate, settle_s
        self.run = uuid.uuid4().hex[:8]
        self.deposits: list[Deposit] = []
        self.producer = Producer(kafka_config(bootstrap, {"linger.ms": 5, "enable.idempotence": True}))
        topic = self.producer.list_topics("commands.account", timeout=10).topics["commands.account"]
        self.partitions = len(topic.partitions)
        self.stopping = threading.Event()
        self.settle_by = float("inf")
        self.pool = ThreadPoolExecutor(8)
        self.local = threading.local()
        self.thread = threading.Thread(target=self._send, daemon=True)

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.stopping.is_set():
            return
        self.settle_by = time.monotonic() + self.settle_s
        self.stopping.set()
        self.thread.join()
        self.pool.shutdown(wait=True)
        remaining = self.producer.flush(self.settle_s)
        assert remaining == 0, f"{remaining} Kafka records neither delivered nor failed"

    def acked_since(self, since: float) -> int:
        return sum(1 for d in self.deposits if d.acked_at is not None and d.acked_at >= since)

    def wait_acked(self, count: int, after: float, within_s: float) -> float:
        """Seconds from `after` until `count` deposits sent after it are acknowledged."""
        deadline = time.monotonic() + within_s
        while self.acked_since(after) < count:
            assert time.monotonic() < deadline, f"fewer than {count} deposits acknowledged in {within_s}s"
            time.sleep(0.05)
        return time.monotonic() - after

    # -- sending ----------------------------------------------------------------------------------

    def _send(self) -> None:
        tick, n = time.monotonic(), 0
        while not self.stopping.is_set():
            tick += 1 / self.rate
            time.sleep(max(0.0, tick - time.monotonic()))
            account = self.accounts[n % len(self.accounts)]
            deposit = Deposit(f"{self.run}-{n}", account, 1 + n % 97, "http" if n % 2 else "kafka",
                              time.monotonic())  # fmt: skip
            self.deposits.append(deposit)
            if deposit.via == "http":
                self.pool.submit(self._post, deposit)
            else:
                self._produce(deposit)
            n += 1

    def _produce(self, deposit: Deposit) -> None:
        command_id = str(uuid.uuid4())
        record = {
            "command_id": command_id,
            "aggregate_id": deposit.account,
            "expected_version": None,
            "correlation_id": command_id,
            "issued_at": datetime.now(UTC),
            "amount": deposit.amount,
            "reference": deposit.reference,
            "channel": "batch",
        }

        def delivered(err: KafkaError | None, _: Message) -> None:
            if err is None:
                deposit.acked_at = time.monotonic()
            else:
                deposit.failed_answers[f"kafka {err.name()}"] += 1

        while True:
            try:
                self.producer.produce(
                    "commands.account",
                    key=deposit.account,
                    value=codec.encode("DepositMoney", record),
                    partition=partition_for(deposit.account, self.partitions),
                    headers=[(COMMAND_ID_HEADER, command_id.encode())],
                    on_delivery=delivered,
                )
                break
            except BufferError:
                self.producer.poll(0.05)
        self.producer.poll(0)

    def _client(self) -> httpx.Client:
        if not hasattr(self.local, "client"):
            self.local.client = httpx.Client(base_url=self.command_url, headers=self.headers, timeout=15)
        client: httpx.Client = self.local.client
        return client

    def _post(self, deposit: Deposit) -> None:
        body = {"amount": deposit.amount, "reference": deposit.reference}
        key = {"Idempotency-Key": deposit.reference}
        while time.monotonic() < self.settle_by:
            try:
                answer = self._client().post(f"/accounts/{deposit.account}/deposits", json=body, headers=key)
            except httpx.HTTPError as exc:
                deposit.failed_answers[type(exc).__name__] += 1
                time.sleep(0.5)
                continue
            if answer.status_code < 300:
                deposit.acked_at = time.monotonic()
                return
            if answer.status_code not in RETRYABLE:
                deposit.refused = f"{answer.status_code} {answer.text[:200]}"
                return
            error = answer.json().get("error", "") if answer.headers.get("content-type", "").startswith(
                "application/json") else ""  # fmt: skip
            deposit.failed_answers[f"{answer.status_code} {error}".strip()] += 1
            time.sleep(min(float(answer.headers.get("retry-after", "1")), 2.0))


class Reads:
    """A client reading one account 10 times a second through a fault: what readers saw, and when
    reads were served again after it."""

    def __init__(self, query_url: str, headers: dict[str, str], account: str) -> None:
        self.url = f"{query_url}/accounts/{account}"
        self.headers = headers
        self.seen: Counter[str] = Counter()
        self.served: list[float] = []  # when a read answered 200
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)

    def __enter__(self) -> Reads:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join()

    def _read(self) -> None:
        with httpx.Client(headers=self.headers, timeout=5) as client:
            while not self.stopping.wait(0.1):
                try:
                    answer = client.get(self.url)
                except httpx.HTTPError as exc:
                    self.seen[type(exc).__name__] += 1
                    continue
                if answer.status_code == 200:
                    self.served.append(time.monotonic())
                    self.seen["200"] += 1
                else:
                    error = answer.json().get("error", "") if answer.content else ""
                    self.seen[f"{answer.status_code} {error}".strip()] += 1

    def failed(self) -> Counter[str]:
        return Counter({k: n for k, n in self.seen.items() if k != "200"})

    def served_again(self, after: float, within_s: float = 120) -> float:
        """Seconds from `after` until a read answered 200."""
        deadline = time.monotonic() + within_s
        while not any(t >= after for t in self.served):
            assert time.monotonic() < deadline, f"no read served in {within_s}s after the fault: {self.seen}"
            time.sleep(0.05)
        return min(t for t in self.served if t >= after) - after


def open_accounts(command_url: str, headers: dict[str, str], count: int, tag: str) -> list[str]:
    """`count` accounts, each retried with its key on a 5xx (a fault case may follow another)."""
    accounts = []
    with httpx.Client(base_url=command_url, headers=headers, timeout=30) as client:
        for n in range(count):
            body, key = {"owner_id": f"{tag}-{n}", "currency": "EUR"}, {"Idempotency-Key": f"open-{tag}-{n}"}
            deadline = time.monotonic() + 90
            while (answer := client.post("/accounts", json=body, headers=key)).status_code in RETRYABLE:
                assert time.monotonic() < deadline, answer.text
                time.sleep(1)
            assert answer.status_code == 201, answer.text
            accounts.append(answer.json()["account_id"])
    return accounts


def check(bootstrap: str, load: Load, query_url: str, headers: dict[str, str]) -> Tally:
    """The invariants, from the log and the view; the counts of the case."""
    deposits = {d.reference: d for d in load.deposits}
    refused = [d for d in load.deposits if d.refused]
    assert not refused, f"deposits refused: {[(d.reference, d.refused) for d in refused[:5]]}"
    accounts = set(load.accounts)
    applied: Counter[str] = Counter()
    versions: dict[str, list[int]] = {a: [] for a in accounts}
    balances: Counter[str] = Counter()
    for _, _, _, event in read_topic(bootstrap, "events.account"):
        account = event["aggregate_id"]
        if account not in accounts:
            continue
        versions[account].append(event["version"])
        if event["event_type"] == "MoneyDeposited":
            balances[account] += event["amount"]
            if event["reference"] in deposits:
                applied[event["reference"]] += 1
    for account, seen in versions.items():
        assert seen == list(range(1, len(seen) + 1)), f"{account}: versions {seen[:20]}... not contiguous"

    tally = Tally(sent=len(deposits))
    for reference, deposit in deposits.items():
        times = applied[reference]
        tally.failed_answers.update(deposit.failed_answers)
        if times > 1:
            tally.applied_twice += 1
        if deposit.acked_at is not None:
            tally.acked += 1
            tally.lost += times == 0
        else:
            tally.unsettled += 1
            tally.unsettled_applied += times == 1
    acked = sorted(d.acked_at for d in deposits.values() if d.acked_at is not None)
    tally.longest_gap_s = max((b - a for a, b in pairwise(acked)), default=0.0)

    with httpx.Client(base_url=query_url, headers=headers, timeout=10) as client:
        for account in accounts:
            deadline = time.monotonic() + 60
            while (view := _balance(client, account)) != balances[account]:
                assert time.monotonic() < deadline, f"{account}: view {view}, log {balances[account]}"
                time.sleep(0.2)
    return tally


def _balance(client: httpx.Client, account: str) -> Any:
    answer = client.get(f"/accounts/{account}")
    return answer.json().get("balance") if answer.status_code == 200 else answer.status_code
