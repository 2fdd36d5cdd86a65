"""The read side rides out Redis and Kafka outages on a private stack (tests/faults/conftest.py):
Redis SIGKILLed and restarted on its data, restarted empty, SIGSTOPped; the broker SIGKILLed and
restarted. Projectors keep their pid, apply nothing twice and skip nothing (the view equals a clean
rebuild, by `cqrs views verify`'s Rebuilder.verify), commit no offset past what Redis holds; the
query API answers 503 store_unavailable (never hangs) and needs no restart."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from infra import credentials
from infra.redis_server import RedisServer
from stream_processors import layout
from stream_processors.log_admin import LogAdmin
from stream_processors.rebuild import Rebuilder
from tests.faults.conftest import PrivateStack
from tests.support.kafka import Aggregate, ChildProcess, read_topic
from tests.support.projection import EventLog, ProjectorProcess, last_offsets
from tests.support.tokens import bearer

pytestmark = pytest.mark.faults

ACCOUNTS = 30


class ReadSide:
    """One test's topics (events.acct<unique>), Redis database and clients, on the private stack."""

    def __init__(self, stack: PrivateStack, unique: str, db: int, log_dir: Path) -> None:
        self.stack, self.log_dir = stack, log_dir
        self.aggregate = Aggregate.create(stack.bootstrap, unique, partitions=4)
        self.topic = f"events.{self.aggregate.name}"
        self.group = f"projector.{self.aggregate.name}.accounts.g"
        self.passwords = credentials.ensure(stack.settings.stack_dir)
        self.url = stack.settings.redis_url.rsplit("/", 1)[0] + f"/{db}"
        self.operator_url = self.url_for(credentials.OPERATOR)
        self.redis = redis.Redis.from_url(self.operator_url, socket_timeout=2)
        self.redis.flushdb()
        self.server = RedisServer(stack.settings)
        self.log = EventLog(self.aggregate)
        self.accounts = [f"f{unique}-{i}" for i in range(ACCOUNTS)]
        opened = [("AccountOpened", a, {"owner_id": "o", "currency": "EUR", "overdraft_limit": 0})
                  for a in self.accounts]  # fmt: skip
        self.log.append(opened)

    def url_for(self, who: str) -> str:
        return credentials.with_user(self.url, who, self.passwords[who])

    def env_for(self, who: str) -> dict[str, str]:
        return credentials.client_env(who, self.passwords[who], self.url)

    def projector(self) -> ProjectorProcess:
        env = {**self.env_for("projector"), "PROJECTOR_STATUS_INTERVAL_S": "0.5"}
        return ProjectorProcess(self.aggregate, self.url_for("projector"), self.log_dir, None, env).start()

    # -- Redis ------------------------------------------------------------------------------------

    def kill_redis(self) -> None:
        pid = self.server.pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        while self.server.pid() is not None:
            time.sleep(0.02)

    def start_redis(self, *, empty: bool = False) -> None:
        if empty:  # its data goes with it: the append-only files
            shutil.rmtree(self.server.home / "appendonlydir", ignore_errors=True)
        self.server.start()

    # -- the view ---------------------------------------------------------------------------------

    def current(self) -> int | None:
        raw = self.redis.get(layout.current("accounts"))
        return int(raw) if raw is not None else None

    def checkpoints(self, generation: int | None = None) -> dict[int, int]:
        generation = generation or self.current()
        if generation is None:
            return {}
        raw = self.redis.hgetall(layout.checkpoints("accounts", generation))
        return {int(k): int(v) for k, v in raw.items()}

    def wait_live(self, within_s: float = 90) -> int:
        deadline = time.monotonic() + within_s
        while True:
            try:
                current = self.current()
                if (
                    current is not None
                    and self.redis.hget(layout.meta("accounts", current), "state") == b"live"
                ):
                    return current
            except redis.RedisError:
                pass
            assert time.monotonic() < deadline, "the view never went live"
            time.sleep(0.1)

    def wait_caught_up(self, within_s: float = 90) -> int:
        ends = last_offsets(self.aggregate)
        deadline = time.monotonic() + within_s
        while True:
            current = self.wait_live(within_s)
            done = self.checkpoints(current)
            if all(done.get(p, -1) >= o for p, o in ends.items()):
                return current
            assert time.monotonic() < deadline, f"checkpoints {done} never reached {ends}"
            time.sleep(0.1)

    def verify(self) -> None:
        """The view equals a scratch rebuild from the log (`cqrs views verify`)."""
        rebuilder = Rebuilder(
            "accounts",
            redis_url=self.operator_url,
            bootstrap=self.stack.bootstrap,
            log_dir=self.log_dir,
            source=self.aggregate.name,
        )
        report = rebuilder.verify(
            workers=1,
            timeout_s=60,
            worker_env={"REDIS_URL": self.operator_url, "KAFKA_BOOTSTRAP_SERVERS": self.stack.bootstrap},
        )
        assert report.equal, report
        assert report.keys > ACCOUNTS

    def first_events_after(self, checkpoints: dict[int, int]) -> dict[int, int]:
        """Per partition, the offset of the first event after the checkpoint (the end if none)."""
        first: dict[int, int] = {}
        for partition, offset, _, _ in read_topic(self.stack.bootstrap, self.topic, decode=False):
            if offset > checkpoints.get(partition, -1) and partition not in first:
                first[partition] = offset
        return {p: first.get(p, 1 << 62) for p in range(self.aggregate.partitions)}

    def committed(self, generation: int) -> dict[int, int]:
        return LogAdmin(self.stack.bootstrap).committed(f"{self.group}{generation}", self.topic)


class Flow(threading.Thread):
    """Deposits appended to the log in small transactions, steadily, until stopped."""

    def __init__(self, side: ReadSide, per_transaction: int = 10, interval_s: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.side, self.per_transaction, self.interval_s = side, per_transaction, interval_s
        self.events = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stopping.is_set():
            batch = []
            for _ in range(self.per_transaction):
                account = self.side.accounts[n % ACCOUNTS]
                batch.append(
                    ("MoneyDeposited", account, {"amount": 1 + n % 97, "reference": None, "channel": "t"})
                )
                n += 1
            self.side.log.append(batch)
            self.events += len(batch)
            time.sleep(self.interval_s)

    def stop(self) -> None:
        self.stopping.set()
        self.join(30)


class QueryApi(ChildProcess):
    def __init__(self, side: ReadSide) -> None:
        self.side, self.log, self.process = side, side.log_dir / "query-api.log", None
        self.url = side.stack.query_url

    def start(self) -> QueryApi:
        env = {
            **os.environ,
            **self.side.env_for("query-api"),
            "KAFKA_BOOTSTRAP_SERVERS": self.side.stack.bootstrap,
            "QUERY_API_PORT": str(self.side.stack.query_api_port),
        }
        self.spawn("query_api.app", env)
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{self.url}/healthz", timeout=1)
                return self
            except httpx.HTTPError:
                assert time.monotonic() < deadline, self.log.read_text()
                time.sleep(0.2)


def serve_transfers_view(side: ReadSide) -> None:
    """The transfers view also gates /readyz; these tests run no transfers projector."""
    side.redis.set(layout.current("transfers"), 1)
    side.redis.hset(layout.meta("transfers", 1), "state", "live")


@pytest.fixture
def side(private_stack: PrivateStack, unique: str, tmp_path: Path) -> Iterator[ReadSide]:
    read_side = ReadSide(private_stack, unique, 7, tmp_path)  # flushed first: a database of its own
    try:
        yield read_side
    finally:
        if read_side.server.pid() is None:
            read_side.server.start()  # a test that failed while Redis was down
        else:
            os.kill(read_side.server.pid() or 0, signal.SIGCONT)


def _log(path: Path) -> str:
    return path.read_text(errors="replace")


@pytest.mark.full_faults  # test_under_load.py runs the same fault in `make test`
def test_redis_killed_and_restarted_on_its_data_under_load(side: ReadSide) -> None:
    projector = side.projector()
    flow = Flow(side)
    flow.start()
    try:
        generation = side.wait_live()
        before = side.checkpoints()
        while side.checkpoints() == before:  # projecting
            time.sleep(0.05)
        pid = projector.process.pid if projector.process else 0
        side.kill_redis()
        down_at = time.monotonic()
        committed_during = {}
        while time.monotonic() - down_at < 4:
            committed_during = side.committed(generation)
            time.sleep(0.5)
        side.start_redis()
        restarted = time.monotonic()
        at_restart = side.checkpoints(generation)  # all that was applied before the kill
        while side.checkpoints(generation) == at_restart:
            assert time.monotonic() - restarted < 30, _log(projector.log)
            time.sleep(0.05)
        recovered_s = time.monotonic() - restarted
        flow.stop()
        # No offset committed past what Redis held: at most up to the first event after the
        # checkpoint (transaction markers after it may be passed: they are not events).
        unapplied = side.first_events_after(at_restart)
        assert all(o <= unapplied[p] for p, o in committed_during.items()), (committed_during, unapplied)
        assert side.wait_caught_up() == generation  # the same generation, carried on
        assert projector.process is not None and projector.process.poll() is None
        assert projector.process.pid == pid
        text = _log(projector.log)
        assert "Redis unavailable" in text, text[-3000:]  # the fault hit it mid-flow
        final, committed = side.checkpoints(generation), side.committed(generation)
        unapplied = side.first_events_after(final)
        assert all(o <= unapplied[p] for p, o in committed.items()), (committed, final)
        side.verify()
        print(
            f"\nredis SIGKILL + restart on its data: {flow.events} deposits during the run, Redis down "
            f"{restarted - down_at:.1f}s, projector applying again {recovered_s:.2f}s after the restart, "
            f"retries logged {text.count('Redis unavailable')}"
        )
    finally:
        flow.stop()
        projector.stop()


def test_redis_restarted_empty_rebuilds_the_view_and_is_not_ready_meanwhile(side: ReadSide) -> None:
    serve_transfers_view(side)
    projector = side.projector()
    api = QueryApi(side).start()
    flow = Flow(side)
    flow.start()
    try:
        old = side.wait_live()
        deadline = time.monotonic() + 30
        while httpx.get(f"{api.url}/readyz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(1)
        side.kill_redis()
        side.start_redis(empty=True)
        restarted = time.monotonic()
        serve_transfers_view(side)  # as its own projector would (not run here)
        answers: list[tuple[float, int, int | None]] = []  # (time, /readyz status, current generation)
        while True:
            status = httpx.get(f"{api.url}/readyz", timeout=5).status_code
            current = side.current()
            answers.append((time.monotonic() - restarted, status, current))
            if status == 200:
                break
            assert time.monotonic() - restarted < 60, (answers[-5:], _log(projector.log)[-3000:])
            time.sleep(0.05)
        ready_s = answers[-1][0]
        new = side.current()
        assert new is not None and new > old
        # Not ready until the new generation had caught up with the log as it was when built.
        info = side.redis.hgetall(layout.meta("accounts", new))
        targets = {
            int(k.decode()[len(layout.TARGET) :]): int(v)
            for k, v in info.items()
            if k.decode().startswith(layout.TARGET)
        }
        done = side.checkpoints(new)
        assert all(done.get(p, -1) >= o for p, o in targets.items()), (targets, done)
        assert any(status == 503 for _, status, _ in answers)
        # Nothing left of the lost generation.
        assert not list(side.redis.scan_iter(match=layout.scan_pattern("accounts", old)))
        flow.stop()
        side.wait_caught_up()
        assert projector.process is not None and projector.process.poll() is None  # same pid (exec)
        side.verify()
        print(
            f"\nredis restarted empty: {flow.events} deposits during the run; /readyz 503 for "
            f"{ready_s:.2f}s until generation {new} was rebuilt from the log ({len(answers)} polls)"
        )
    finally:
        flow.stop()
        api.stop()
        projector.stop()


def test_redis_stopped_the_query_api_answers_503_at_once_then_recovers(side: ReadSide) -> None:
    serve_transfers_view(side)
    projector = side.projector()
    api = QueryApi(side).start()
    headers = bearer()
    account = side.accounts[0]
    try:
        side.wait_live()
        with httpx.Client(base_url=api.url, headers=headers, timeout=15) as client:
            assert client.get(f"/accounts/{account}").status_code == 200
            stream_lines: list[str] = []
            ended: list[float] = []

            def follow() -> None:
                with client.stream("GET", f"/accounts/{account}/stream") as answer:
                    for line in answer.iter_lines():
                        stream_lines.append(line)
                ended.append(time.monotonic())

            reader = threading.Thread(target=follow, daemon=True)
            reader.start()
            while not any(line.startswith("event: account") for line in stream_lines):
                time.sleep(0.05)
            pid = side.server.pid() or 0
            os.kill(pid, signal.SIGSTOP)
            stopped = time.monotonic()
            try:
                timings = {}
                for path in (
                    f"/accounts/{account}",
                    f"/accounts/{account}/transactions",
                    "/views",
                    "/readyz",
                ):
                    began = time.monotonic()
                    answer = client.get(path)
                    timings[path] = time.monotonic() - began
                    assert answer.status_code == 503, (path, answer.text)
                    assert answer.headers["retry-after"]
                    if path != "/readyz":
                        assert answer.json()["error"] == "store_unavailable", answer.text
                    assert timings[path] < 4, timings
                assert client.get("/healthz").status_code == 200
                reader.join(10)
                assert not reader.is_alive(), "the stream did not end while Redis was stopped"
                assert "event: unavailable" in stream_lines, stream_lines
                stream_ended_s = ended[0] - stopped
            finally:
                os.kill(pid, signal.SIGCONT)
            resumed = time.monotonic()
            deadline = resumed + 20
            while client.get("/readyz").status_code != 200:
                assert time.monotonic() < deadline
                time.sleep(0.1)
            recovered_s = time.monotonic() - resumed
            assert client.get(f"/accounts/{account}").status_code == 200
            assert api.process is not None and api.process.poll() is None
            last_id = next(line for line in reversed(stream_lines) if line.startswith("id: "))[4:]
            # EventSource's reconnection: resumes after the last change it got.
            with client.stream(
                "GET", f"/accounts/{account}/stream", headers={"Last-Event-ID": last_id}
            ) as again:
                assert again.status_code == 200
        print(
            f"\nredis SIGSTOP: 503 store_unavailable in {max(timings.values()):.2f}s at most "
            f"({ {k: round(v, 2) for k, v in timings.items()} }), the stream ended cleanly after "
            f"{stream_ended_s:.1f}s, ready again {recovered_s:.2f}s after SIGCONT"
        )
    finally:
        api.stop()
        projector.stop()


@pytest.mark.full_faults  # test_under_load.py runs the same fault in `make test`
def test_broker_killed_and_restarted_under_a_projector(side: ReadSide) -> None:
    projector = side.projector()
    flow = Flow(side)
    flow.start()
    try:
        generation = side.wait_live()
        before = side.checkpoints()
        while side.checkpoints() == before:
            time.sleep(0.05)
        pid = projector.process.pid if projector.process else 0
        flow.stop()
        events_before = flow.events
        side.stack.kill_broker()
        killed = time.monotonic()
        time.sleep(10)
        start_s = side.stack.start_broker()
        up = time.monotonic()
        at_restart = side.checkpoints(generation)
        flow = Flow(side)
        flow.start()
        while side.checkpoints(generation) == at_restart:
            assert time.monotonic() - up < 60, _log(projector.log)[-4000:]
            time.sleep(0.05)
        resumed_s = time.monotonic() - up
        time.sleep(2)
        flow.stop()
        assert side.wait_caught_up() == generation
        assert projector.process is not None and projector.process.poll() is None
        assert projector.process.pid == pid
        final, committed = side.checkpoints(generation), side.committed(generation)
        unapplied = side.first_events_after(final)
        assert all(o <= unapplied[p] for p, o in committed.items()), (committed, final)
        side.verify()
        print(
            f"\nbroker SIGKILL, restarted after {up - killed:.1f}s (starting took {start_s:.1f}s): "
            f"{events_before + flow.events} deposits; the projector (same pid) applied again "
            f"{resumed_s:.2f}s after the broker answered"
        )
    finally:
        flow.stop()
        projector.stop()
