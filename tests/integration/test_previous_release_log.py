"""Logs are kept forever: a log written by the previous release (fingerprints in the reversed byte
order) is read by this one. The previous release's own command processor and sender, taken from
git, write commands, events, results and snapshots; then this release's processor takes the
partitions over (state, idempotency memory) and its projector projects the old events."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
import urllib.request
from io import BytesIO
from pathlib import Path

import pytest
import redis

from schemas.registry import default_registry
from tests.conftest import Stack
from tests.support.kafka import Aggregate, CommandSender, Processor, read_topic, wait_for_results
from tests.support.projection import ProjectorProcess, last_offsets, wait_caught_up

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
PREVIOUS_RELEASE = "6646883"  # main before the fingerprint fix: it framed fingerprints reversed
# That release predates Kafka security: a sitecustomize gives its clients this process's credentials.
LEGACY_SECURITY = ROOT / "tests" / "support" / "legacy_security"

SEND = """
import json, sys
from tests.support.kafka import Aggregate, CommandSender
aggregate = Aggregate(sys.argv[1], sys.argv[2], int(sys.argv[3]))
sender, sent = CommandSender(aggregate), {}
opening = {"owner_id": "old", "currency": "EUR", "overdraft_limit": 0}
for n in range(4):
    account = f"{sys.argv[4]}-{n}"
    sent[sender.send("OpenAccount", account, opening)] = account
    for amount in (100, 20, 3):
        deposit = {"amount": amount, "reference": None, "channel": "old"}
        sent[sender.send("DepositMoney", account, deposit)] = account
sender.flush()
print(json.dumps(sent))
"""


def previous_release(into: Path) -> Path:
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", PREVIOUS_RELEASE], capture_output=True, check=True, timeout=60
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def test_a_log_written_by_the_previous_release_is_read_by_this_one(
    stack: Stack, unique: str, tmp_path: Path
) -> None:
    old = previous_release(tmp_path / "previous")
    aggregate = Aggregate.create(stack.kafka_bootstrap_servers, unique, partitions=3)
    # The previous release's processor (run from its own tree: the working directory comes first
    # on sys.path), snapshotting often so that its snapshots are in the log too.
    # (That release named its topics by AGGREGATE; this one by TOPIC_SUFFIX.)
    env = {**aggregate.env(f"old-{unique}"), "AGGREGATE": aggregate.name, "PROCESSOR_SNAPSHOT_EVERY": "2",
           "PYTHONPATH": str(LEGACY_SECURITY)}  # fmt: skip
    with open(tmp_path / "old-processor.log", "ab") as out:
        old_processor = subprocess.Popen(
            [sys.executable, "-m", "producers.processor"],
            cwd=old,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while "assigned partitions" not in (tmp_path / "old-processor.log").read_text(errors="replace"):
            assert old_processor.poll() is None and time.monotonic() < deadline, (
                tmp_path / "old-processor.log"
            ).read_text()
            time.sleep(0.2)
        sent_by_old = subprocess.run(
            [sys.executable, "-c", SEND, aggregate.name, aggregate.bootstrap, "3", f"old-{unique}"],
            cwd=old, env={**os.environ, "PYTHONPATH": f"{old}{os.pathsep}{LEGACY_SECURITY}"},
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert sent_by_old.returncode == 0, sent_by_old.stderr
        sent = json.loads(sent_by_old.stdout.strip().splitlines()[-1])
        results = wait_for_results(aggregate.bootstrap, aggregate, set(sent))  # legacy results decode
    finally:
        old_processor.terminate()
        old_processor.wait(30)
    assert all(r[0]["status"] == "ACCEPTED" for r in results.values())
    registry = default_registry()
    frames = [
        m.value() for _, _, _, m in read_topic(aggregate.bootstrap, f"events.{aggregate.name}", decode=False)
    ]
    assert len(frames) == 16
    for frame in frames:  # written the old way: the fingerprint's bytes reversed
        assert registry.find(int.from_bytes(frame[2:10], "little")) is None
        assert registry.find(int.from_bytes(frame[2:10], "big")) is not None

    # This release takes the partitions over: state from legacy snapshots and events, idempotency
    # from legacy results.
    new = Processor(aggregate, f"new-{unique}", tmp_path).start()
    try:
        new.wait_assigned()
        sender = CommandSender(aggregate)
        accounts = sorted(set(sent.values()))
        repeated = next(
            cid for cid, acc in sent.items() if acc == accounts[0] and results[cid][0]["version"] == 2
        )
        fresh = [
            sender.send("DepositMoney", a, {"amount": 1000, "reference": None, "channel": "new"})
            for a in accounts
        ]
        sender.send(
            "DepositMoney",
            accounts[0],
            {"amount": 100, "reference": None, "channel": "old"},
            command_id=repeated,
        )
        sender.flush()
        after = wait_for_results(aggregate.bootstrap, aggregate, set(fresh))
        assert [after[cid][0]["version"] for cid in fresh] == [5, 5, 5, 5]  # versions go on from the old log
        deadline = time.monotonic() + 30
        while len(after[repeated]) < 2:
            assert time.monotonic() < deadline
            after = wait_for_results(aggregate.bootstrap, aggregate, {repeated})
        first, again = after[repeated]
        assert (again["status"], again["version"], again["position"]) == (
            first["status"], first["version"], first["position"]
        )  # fmt: skip
        assert "legacy fingerprint order read so far: 0" not in new.log.read_text()
    finally:
        new.stop()

    # This release's projector projects the old events beside the new ones, and counts them.
    url = f"{stack.redis_url.rsplit('/', 1)[0]}/7"
    redis.Redis.from_url(url).flushdb()
    projector = ProjectorProcess(aggregate, url, tmp_path).start()
    try:
        wait_caught_up(url, 1, last_offsets(aggregate))
        client = redis.Redis.from_url(url)
        for account in accounts:
            assert client.hget(f"view:accounts:g1:account:{account}", "balance") == b"1123"
        metrics = urllib.request.urlopen(
            f"http://127.0.0.1:{projector.metrics_port}/metrics", timeout=5
        ).read()
        legacy = next(
            line for line in metrics.decode().splitlines() if line.startswith("codec_legacy_frames_total")
        )
        assert float(legacy.split()[-1]) == 16.0, legacy  # the 16 old events, and none of the 4 new
    finally:
        projector.stop()
