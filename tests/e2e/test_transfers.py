"""The transfer process manager end to end, on the real stack: chaos (5,000 transfers while the
process manager and command processors are SIGKILLed), a crash between produce and commit,
and a debit that times out and lands late."""

from __future__ import annotations

import os
import random
import signal
import statistics
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Producer

from infra import processes
from infra.services import Service, services
from schemas.headers import COMMAND_ID_HEADER
from schemas.kafka_security import kafka_config
from schemas.keys import partition_for
from tests.conftest import Stack
from tests.e2e.conftest import COMMAND_PORT, PROJECTOR_PORT, QUERY_PORT, Services
from tests.e2e.test_rebuild import cqrs
from tests.support.kafka import ChildProcess, codec, read_topic
from tests.support.tokens import bearer

pytestmark = pytest.mark.e2e

PM_PORT = PROJECTOR_PORT + 3  # where infra/services.py serves it (8014 by default)
PM_MODULE = "stream_processors.transfer_process"
TERMINAL = ("completed", "failed")


# -- the process manager as a process of the test's own ----------------------------------------


class TransferProcessManager(ChildProcess):
    def __init__(self, stack: Stack, log_dir: Path, settings: dict[str, str]) -> None:
        self.log = log_dir / "transfer-process.log"
        self.process = None
        self.env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap_servers,
            "TRANSFER_PROCESS_METRICS_PORT": str(PM_PORT),
            # Stable: a restart fences the killed one's open transaction at once.
            "TRANSFER_PROCESS_INSTANCE_ID": "e2e",
            "TRANSFER_PROCESS_SESSION_TIMEOUT_MS": "6000",
            **settings,
        }
        self.totals: Counter[str] = Counter()  # metrics summed over the killed incarnations
        self.extra: dict[str, str] = {}
        self.since = 0

    def start(self, **extra: str) -> TransferProcessManager:
        self.extra = extra
        self.since = self.log.stat().st_size if self.log.exists() else 0
        self.spawn(PM_MODULE, {**self.env, **extra})
        return self

    def output(self) -> str:
        """What this incarnation logged."""
        with open(self.log, errors="replace") as log:
            log.seek(self.since)
            return log.read()

    def wait_ready(self, within_s: float = 90) -> None:
        deadline = time.monotonic() + within_s
        binds = 0
        while True:
            assert self.process is not None
            if self.process.poll() is not None and binds < 3 and "address already in use" in self.output():
                # The port is in the ephemeral range: a client socket may hold it for a moment.
                binds += 1
                time.sleep(1)
                self.start(**self.extra)
                continue
            assert self.process.poll() is None, self.output()[-3000:]
            try:
                if httpx.get(f"http://127.0.0.1:{PM_PORT}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"not ready: {self.output()[-3000:]}"
            time.sleep(0.2)

    def metrics(self) -> Counter[str]:
        text = httpx.get(f"http://127.0.0.1:{PM_PORT}/metrics", timeout=5).text
        samples: Counter[str] = Counter()
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                samples[name] = int(float(value))
        return samples

    def kill_counted(self) -> None:
        """SIGKILL, keeping what the dying incarnation counted."""
        with suppress(httpx.HTTPError):
            self.totals.update(self.metrics())
        self.kill()


@contextmanager
def own_transfer_process(
    running: Services, stack: Stack, log_dir: Path, **settings: str
) -> Iterator[TransferProcessManager]:
    """This test's process manager. One logical process manager may run at a time (two groups
    would both act on every transfer), so one the services run is stopped meanwhile."""
    theirs = [s for s in services(COMMAND_PORT, QUERY_PORT, PROJECTOR_PORT) if s.module == PM_MODULE]
    if theirs:
        running.runner.stop_all(theirs)
    pm = TransferProcessManager(stack, log_dir, settings).start()
    try:
        pm.wait_ready()
        yield pm
    finally:
        pm.stop()
        for service in theirs:
            running.runner.start(service)
            running.runner.wait_healthy(service)


def service(name: str) -> Service:
    return next(s for s in services(COMMAND_PORT, QUERY_PORT, PROJECTOR_PORT) if s.name == name)


def sigkill(running: Services, name: str) -> None:
    pid_file = running.runner.pid_file(service(name))
    pid = processes.running_pid(pid_file)
    assert pid is not None, f"{name} does not run"
    os.kill(pid, signal.SIGKILL)
    while processes.running_pid(pid_file) is not None:
        time.sleep(0.05)


def restart(running: Services, name: str) -> None:
    running.runner.start(service(name))
    running.runner.wait_healthy(service(name))


# -- HTTP with retries (the same Idempotency-Key: a retry is the same command) -------------------


def post(client: httpx.Client, path: str, body: dict[str, Any] | None, key: str) -> httpx.Response:
    deadline = time.monotonic() + 120
    while True:
        try:
            if body is None:
                response = client.delete(path, headers={"Idempotency-Key": key})
            else:
                response = client.post(path, json=body, headers={"Idempotency-Key": key})
            if response.status_code not in (502, 503, 504):
                return response
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{path} never answered"
        time.sleep(0.5)


def open_account(client: httpx.Client, tag: str, currency: str, deposit: int, overdraft: int = 0) -> str:
    body = {"owner_id": tag, "currency": currency, "overdraft_limit": overdraft}
    opened = post(client, "/accounts", body, f"open-{tag}")
    assert opened.status_code == 201, opened.text
    account_id: str = opened.json()["account_id"]
    if deposit:
        answer = post(client, f"/accounts/{account_id}/deposits", {"amount": deposit}, f"dep-{tag}")
        assert answer.status_code == 200, answer.text
    return account_id


# -- what the logs say ----------------------------------------------------------------------------


@dataclass
class TransferLog:
    status: str = "requested"
    reason: str | None = None
    requested_ms: int = 0
    finished_ms: int = 0


def millis(value: Any) -> int:
    return value if isinstance(value, int) else int(value.timestamp() * 1000)


def transfer_log(stack: Stack, ids: set[str]) -> dict[str, TransferLog]:
    found: dict[str, TransferLog] = {}
    for _, _, _, e in read_topic(stack.kafka_bootstrap_servers, "events.transfer"):
        t = e["aggregate_id"]
        if t not in ids:
            continue
        entry = found.setdefault(t, TransferLog())
        match e["event_type"]:
            case "TransferRequested":
                entry.requested_ms = millis(e["occurred_at"])
            case "TransferCompleted":
                entry.status, entry.finished_ms = "completed", millis(e["occurred_at"])
            case "TransferFailed":
                entry.status, entry.reason = "failed", e["reason"]
                entry.finished_ms = millis(e["occurred_at"])
            case "TransferDebited" | "TransferReversing" if entry.status == "requested":
                entry.status = "debited" if e["event_type"] == "TransferDebited" else "reversing"
    return found


@dataclass
class Ledger:
    balances: dict[str, int] = field(default_factory=dict)
    debits: Counter[str] = field(default_factory=Counter)  # per transfer id
    credits: Counter[str] = field(default_factory=Counter)
    refunds: Counter[str] = field(default_factory=Counter)


def account_log(stack: Stack, accounts: set[str]) -> Ledger:
    ledger = Ledger()
    for _, _, _, e in read_topic(stack.kafka_bootstrap_servers, "events.account"):
        account = e["aggregate_id"]
        if account not in accounts:
            continue
        kind = e["event_type"]
        if kind == "AccountOpened":
            ledger.balances[account] = 0
        elif kind in ("MoneyDeposited", "AccountCredited"):
            ledger.balances[account] += e["amount"]
        elif kind in ("MoneyWithdrawn", "AccountDebited"):
            ledger.balances[account] -= e["amount"]
        if kind == "AccountDebited":
            ledger.debits[e["transfer_id"]] += 1
        elif kind == "AccountCredited":
            (ledger.refunds if e["reversal"] else ledger.credits)[e["transfer_id"]] += 1
    return ledger


def wait_all_finished(stack: Stack, ids: set[str], within_s: float) -> dict[str, TransferLog]:
    deadline = time.monotonic() + within_s
    while True:
        found = transfer_log(stack, ids)
        open_ = [t for t in ids if t not in found or found[t].status not in TERMINAL]
        if not open_:
            return found
        assert time.monotonic() < deadline, f"{len(open_)} transfers unfinished, e.g. {open_[:3]}"
        time.sleep(5 if len(ids) > 100 else 1)


def assert_each_moved_money_once(found: dict[str, TransferLog], ledger: Ledger) -> None:
    for t, entry in found.items():
        debits, credits, refunds = ledger.debits[t], ledger.credits[t], ledger.refunds[t]
        assert debits <= 1 and credits + refunds <= 1, (t, entry, debits, credits, refunds)
        if entry.status == "completed":
            assert (debits, credits, refunds) == (1, 1, 0), (t, entry)
        else:  # failed: no money moved, or it went back
            assert credits == 0 and debits == refunds, (t, entry, debits, refunds)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


# -- chaos ------------------------------------------------------------------------------------

RATE = 50  # RequestTransfer commands per second on commands.transfer


class TransferSender:
    """RequestTransfer commands straight onto commands.transfer, as another system sends them."""

    def __init__(self, stack: Stack) -> None:
        config = {
            **kafka_config(stack.kafka_bootstrap_servers),
            "enable.idempotence": True,
            "linger.ms": 5,
        }
        self.producer = Producer(config)

    def request(self, transfer_id: str, src: str, dst: str, amount: int) -> None:
        command_id = str(uuid.uuid4())
        record = {
            "command_id": command_id,
            "aggregate_id": transfer_id,
            "expected_version": None,
            "correlation_id": command_id,
            "issued_at": datetime.now(UTC),
            "from_account_id": src,
            "to_account_id": dst,
            "amount": amount,
        }
        self.producer.produce(
            "commands.transfer",
            key=transfer_id,
            value=codec.encode("RequestTransfer", record),
            partition=partition_for(transfer_id, 12),
            headers=[(COMMAND_ID_HEADER, command_id.encode())],
        )
        self.producer.poll(0)

    def flush(self) -> None:
        assert self.producer.flush(60) == 0


@pytest.mark.timeout(600)
def test_chaos_5000_transfers_while_the_process_manager_and_processors_are_killed(
    running: Services, stack: Stack, unique: str, tmp_path: Path
) -> None:
    rng = random.Random(unique)
    c = running.commands
    began = time.monotonic()

    # 100 accounts with known balances: EUR and USD ones, low ones, overdrafts, closed ones.
    specs: list[tuple[str, str, int, int]] = []  # tag, currency, deposit, overdraft
    for n in range(100):
        tag = f"chaos-{unique}-{n}"
        if n < 40:
            specs.append((tag, "EUR", rng.randint(50_000, 200_000), 0))
        elif n < 60:
            specs.append((tag, "EUR", rng.randint(0, 2_000), 0))  # low: transfers from it fail
        elif n < 70:
            specs.append((tag, "EUR", 1_000, 20_000))  # may go down to -20,000
        elif n < 75:
            specs.append((tag, "EUR", 0, 0))  # never funded but by transfers
        elif n < 90:
            specs.append((tag, "USD", rng.randint(50_000, 100_000), 0))
        else:
            specs.append((tag, "EUR", 0, 0))  # closed below
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda s: open_account(c, *s), specs))
    account = dict(zip([s[0] for s in specs], ids, strict=True))
    overdraft = {account[tag]: o for tag, _, _, o in specs}
    closed = ids[90:]
    for a in closed:
        assert post(c, f"/accounts/{a}", None, f"close-{a}").status_code == 200
    eur = ids[:75]
    usd = ids[75:90]
    money_before = sum(deposit for _, _, deposit, _ in specs)

    # Requests refused at the door are not transfers.
    same = c.post("/transfers", json={"from_account_id": eur[0], "to_account_id": eur[0], "amount": 5})
    assert (same.status_code, same.json()["error"]) == (409, "same_account"), same.text
    assert (
        c.post(
            "/transfers", json={"from_account_id": eur[0], "to_account_id": eur[1], "amount": 0}
        ).status_code
        == 422
    )

    # 5,000 transfers: most between accounts of one currency, the rest must fail at the credit
    # (another currency, a closed or a missing target: refunded) or at the debit.
    plan: list[tuple[str, str, int, str]] = []  # from, to, amount, kind
    for _ in range(5_000):
        draw = rng.random()
        if draw < 0.85:
            pool_ = eur if rng.random() < 0.8 else usd
            src, dst = rng.sample(pool_, 2)
            plan.append((src, dst, rng.randint(1, 30_000), "same_currency"))
        elif draw < 0.90:
            src, dst = (
                (rng.choice(eur), rng.choice(usd))
                if rng.random() < 0.5
                else (rng.choice(usd), rng.choice(eur))
            )
            plan.append((src, dst, rng.randint(1, 5_000), "currency_mismatch"))
        elif draw < 0.94:
            plan.append((rng.choice(eur[:40]), rng.choice(closed), rng.randint(1, 5_000), "account_closed"))
        elif draw < 0.97:
            plan.append(
                (
                    rng.choice(eur[:40]),
                    f"ghost-{uuid.uuid4().hex[:8]}",
                    rng.randint(1, 5_000),
                    "account_not_found",
                )
            )
        else:
            plan.append((rng.choice(closed), rng.choice(eur), rng.randint(1, 5_000), "from_closed"))
    keys = [f"chaos-{unique}-t{n}" for n in range(len(plan))]

    # Short timeouts: a killed account processor leaves debits unanswered long enough for
    # re-sends and for some transfers to be given up (timed_out), and their debits to land late.
    pm_settings = {"TRANSFER_PROCESS_TIMEOUT_S": "5", "TRANSFER_PROCESS_MAX_RETRIES": "2"}
    with own_transfer_process(running, stack, tmp_path, **pm_settings) as pm:
        kills: list[str] = []

        def monkey() -> None:
            """Every 8 s one SIGKILL: the process manager, or a command processor."""
            victims = ["transfer-process", "command-processor-account", "transfer-process"]
            victims += ["command-processor-transfer", "transfer-process", "command-processor-account"]
            for victim in victims:
                time.sleep(8)
                if victim == "transfer-process":
                    pm.kill_counted()
                    time.sleep(1)
                    pm.start()
                    pm.wait_ready()
                else:
                    sigkill(running, victim)
                    time.sleep(1)
                    restart(running, victim)
                kills.append(victim)

        chaos = threading.Thread(target=monkey, daemon=True)
        sending_began = time.monotonic()
        chaos.start()
        # Every tenth transfer through POST /transfers, the others as RequestTransfer commands on
        # commands.transfer at a steady rate (the load the latencies are measured at).
        over_http = [n for n in range(len(plan)) if n % 10 == 0]
        transfer_ids = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"chaos-{unique}-{n}")) for n in range(len(plan))]
        sent_at: dict[str, float] = {}
        local = threading.local()

        def request(n: int) -> None:
            if not hasattr(local, "client"):
                local.client = httpx.Client(
                    base_url=f"http://127.0.0.1:{COMMAND_PORT}", timeout=15, headers=bearer()
                )
            src, dst, amount, _ = plan[n]
            body = {"from_account_id": src, "to_account_id": dst, "amount": amount}
            answer = post(local.client, "/transfers", body, keys[n])
            assert answer.status_code == 202, answer.text
            transfer_ids[n] = answer.json()["transfer_id"]

        with ThreadPoolExecutor(4) as pool:
            http = pool.map(request, over_http)
            sender = TransferSender(stack)
            tick = time.monotonic()
            for n in range(len(plan)):
                if n % 10 == 0:
                    continue
                tick += 1 / RATE
                time.sleep(max(0.0, tick - time.monotonic()))
                src, dst, amount, _ = plan[n]
                sender.request(transfer_ids[n], src, dst, amount)
                sent_at[transfer_ids[n]] = time.time()
            sender.flush()
            list(http)
        sending_s = time.monotonic() - sending_began
        chaos.join(120)
        assert not chaos.is_alive() and len(kills) == 6, kills
        ids_set = set(transfer_ids)
        found = wait_all_finished(stack, ids_set, within_s=240)
        drained_s = time.monotonic() - sending_began
        pm.totals.update(pm.metrics())

    # Every transfer ended, with a reason when it failed, each moving money at most once.
    assert len(found) == 5_000 and all(f.status in TERMINAL for f in found.values())
    ledger = account_log(stack, set(ids))
    assert_each_moved_money_once(found, ledger)
    by_kind: dict[str, Counter[str]] = defaultdict(Counter)
    for t, (_, _, _, kind) in zip(transfer_ids, plan, strict=True):
        f = found[t]
        by_kind[kind][f.reason or f.status] += 1
        if f.status == "failed":
            assert f.reason, t
    allowed = {
        "currency_mismatch": {"currency_mismatch", "insufficient_funds"},
        "account_closed": {"account_closed", "insufficient_funds"},
        "account_not_found": {"account_not_found", "insufficient_funds"},
        "from_closed": {"account_closed"},
        "same_currency": {"completed", "insufficient_funds"},
    }
    for kind, outcomes in by_kind.items():
        assert set(outcomes) <= allowed[kind] | {"timed_out"}, (kind, outcomes)
    assert (
        by_kind["same_currency"]["completed"] > 1_000 and by_kind["same_currency"]["insufficient_funds"] > 0
    )
    for kind in ("currency_mismatch", "account_closed", "account_not_found"):  # failed after a debit
        refunded = [t for t, p in zip(transfer_ids, plan, strict=True) if p[3] == kind and ledger.refunds[t]]
        assert refunded, kind

    # Money: the total is what was deposited, no balance below its overdraft limit, and the
    # accounts view says the same as the log.
    money_after = sum(ledger.balances.values())
    assert money_after == money_before
    for a in ids:
        assert ledger.balances[a] >= -overdraft[a], (a, ledger.balances[a])
    q = running.queries
    for a in ids:
        view = q.get(f"/accounts/{a}").json()
        deadline = time.monotonic() + 30
        while view["balance"] != ledger.balances[a] and time.monotonic() < deadline:
            time.sleep(0.2)
            view = q.get(f"/accounts/{a}").json()
        assert view["balance"] == ledger.balances[a], (a, view)
    # GET /transfers/{id} tells how each ended.
    for t in transfer_ids[::10]:
        body = q.get(f"/transfers/{t}").json()
        deadline = time.monotonic() + 30
        while body.get("status") not in TERMINAL and time.monotonic() < deadline:
            time.sleep(0.2)
            body = q.get(f"/transfers/{t}").json()
        assert (body["status"], body.get("reason")) == (found[t].status, found[t].reason), (t, body)

    # The views equal a clean rebuild.
    for view in ("accounts", "transfers"):
        verify = cqrs(stack, "views", "verify", view, "--workers", "2", "--quiet")
        verdict, _ = verify.communicate(timeout=300)
        assert verify.returncode == 0 and "identical" in verdict, verdict

    completed = {t: f for t, f in found.items() if f.status == "completed"}
    latencies = [(f.finished_ms - f.requested_ms) / 1000 for f in completed.values()]
    from_send = [f.finished_ms / 1000 - sent_at[t] for t, f in completed.items() if t in sent_at]
    first = min(f.requested_ms for f in found.values())
    last = max(f.finished_ms for f in found.values())
    outcome = Counter(f.reason or f.status for f in found.values())
    print(
        f"\nchaos: {len(found)} transfers sent in {sending_s:.1f}s, all finished after {drained_s:.1f}s; "
        f"{dict(outcome)}; kills {Counter(kills)}\n"
        f"money before {money_before} after {money_after}; "
        f"{len(found) / ((last - first) / 1000):.1f} transfers/s (first request to last finish); "
        f"request->completed p50 {statistics.median(latencies) * 1000:.0f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms; "
        f"sent->completed p50 {statistics.median(from_send) * 1000:.0f} ms, "
        f"p99 {percentile(from_send, 0.99) * 1000:.0f} ms (sent at {RATE}/s)\n"
        f"process manager: retried {pm.totals['transfer_process_retried_total']}, "
        f"timed out {pm.totals['transfer_process_timed_out_total']}, late debits refunded "
        f"{pm.totals['transfer_process_late_debits_refunded_total']}, "
        f"aborted transactions {pm.totals['transfer_process_aborted_total']}; "
        f"test took {time.monotonic() - began:.0f}s"
    )


# -- a crash between produce and commit --------------------------------------------------------


@pytest.mark.timeout(420)
def test_a_crash_between_producing_and_committing_loses_and_repeats_no_step(
    running: Services, stack: Stack, unique: str, tmp_path: Path
) -> None:
    c = running.commands
    accounts = [open_account(c, f"crash-{unique}-{n}", "EUR", 10_000) for n in range(6)]
    aborted_before = _aborted_commands(stack)
    with own_transfer_process(running, stack, tmp_path, TRANSFER_PROCESS_TIMEOUT_S="5") as pm:
        pm.stop()  # restarted below, crashing each time
        transfer_ids: list[str] = []
        for crash in range(4):
            # Work for each incarnation: new transfers need two transactions that send (the
            # debit, then the mark and credit), so one commits and the next dies before its commit.
            for n in range(6 * crash, 6 * crash + 6):
                body = {
                    "from_account_id": accounts[n % 6],
                    "to_account_id": accounts[(n + 1) % 6],
                    "amount": 100,
                }
                answer = post(c, "/transfers", body, f"crash-{unique}-{n}")
                assert answer.status_code == 202, answer.text
                transfer_ids.append(answer.json()["transfer_id"])
            pm.start(TRANSFER_PROCESS_EXIT_BEFORE_COMMIT_AFTER="1")
            assert pm.process is not None
            assert pm.process.wait(120) == 75, pm.output()[-3000:]
            assert "fault injection: exiting after producing" in pm.output()
        assert _aborted_commands(stack) > aborted_before  # the crashed transactions' commands
        pm.start()
        pm.wait_ready()
        found = wait_all_finished(stack, set(transfer_ids), within_s=120)
    assert {f.status for f in found.values()} == {"completed"}
    ledger = account_log(stack, set(accounts))
    assert_each_moved_money_once(found, ledger)
    assert sum(ledger.balances.values()) == 6 * 10_000 and len(found) == 24
    print(f"\ncrash before commit: 4 crashes, {len(found)} transfers completed, each once")


def _aborted_commands(stack: Stack) -> int:
    """Records on the command topics that read_committed readers never see (aborted)."""
    total = 0
    for topic in ("commands.account", "commands.transfer"):
        every = sum(
            1 for _ in read_topic(stack.kafka_bootstrap_servers, topic, committed=False, decode=False)
        )
        committed = sum(1 for _ in read_topic(stack.kafka_bootstrap_servers, topic, decode=False))
        total += every - committed
    return total


# -- a debit without an answer -----------------------------------------------------------------


@pytest.mark.timeout(300)
def test_an_unanswered_debit_times_out_and_is_refunded_when_it_lands_late(
    running: Services, stack: Stack, unique: str, tmp_path: Path
) -> None:
    c, q = running.commands, running.queries
    src = open_account(c, f"late-{unique}-src", "EUR", 1_000)
    dst = open_account(c, f"late-{unique}-dst", "EUR", 0)
    settings = {"TRANSFER_PROCESS_TIMEOUT_S": "2", "TRANSFER_PROCESS_MAX_RETRIES": "2"}
    with own_transfer_process(running, stack, tmp_path, **settings) as pm:
        processes.stop(running.runner.pid_file(service("command-processor-account")))
        try:
            answer = post(
                c,
                "/transfers",
                {"from_account_id": src, "to_account_id": dst, "amount": 100},
                f"late-{unique}",
            )
            assert answer.status_code == 202, answer.text
            t = answer.json()["transfer_id"]
            view = q.get(f"/transfers/{t}").json()
            deadline = time.monotonic() + 60
            while view.get("status") != "failed" and time.monotonic() < deadline:
                time.sleep(0.2)
                view = q.get(f"/transfers/{t}").json()
            assert (view["status"], view["reason"]) == ("failed", "timed_out"), view
            assert "no answer after 2 re-sends" in view["detail"]
            counted = pm.metrics()
            assert counted["transfer_process_retried_total"] >= 2
            assert counted["transfer_process_timed_out_total"] == 1
            assert counted['transfer_process_failed_total{reason="timed_out"}'] == 1
        finally:
            restart(running, "command-processor-account")
        # The debit was sent before the transfer was given up: it lands now, and goes back.
        deadline = time.monotonic() + 60
        while True:
            ledger = account_log(stack, {src, dst})
            if ledger.refunds[t]:
                break
            assert time.monotonic() < deadline, (ledger.debits[t], ledger.refunds[t])
            time.sleep(1)
        assert (ledger.debits[t], ledger.credits[t], ledger.refunds[t]) == (1, 0, 1)
        assert ledger.balances == {src: 1_000, dst: 0}
        assert pm.metrics()["transfer_process_late_debits_refunded_total"] == 1
        assert transfer_log(stack, {t})[t].reason == "timed_out"  # still failed, as it said

        # And the next transfer goes through.
        answer = post(
            c, "/transfers", {"from_account_id": src, "to_account_id": dst, "amount": 100}, f"late2-{unique}"
        )
        t2 = answer.json()["transfer_id"]
        assert wait_all_finished(stack, {t2}, within_s=60)[t2].status == "completed"
