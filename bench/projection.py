"""Projection: events.<agg> -> faust projector -> Redis views, vs a raw consume -> decode -> pipeline loop.

Usage: python bench/projection.py [--events N]
Writes N events (deposits over 1,000 accounts) to private topics, then measures both readers.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import redis
from confluent_kafka import Consumer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import RESULTS, bootstrap, unique, write
from schemas.codec import SingleObjectCodec
from tests.support.kafka import Aggregate
from tests.support.projection import EventLog, deposits, free_port, last_offsets

PARTITIONS = 12
codec = SingleObjectCodec()


def redis_url(db: int) -> str:
    base = os.environ.get("REDIS_URL", "redis://127.0.0.1:16379/0").rsplit("/", 1)[0]
    return f"{base}/{db}"


def raw(aggregate: Aggregate, total: int, url: str) -> float:
    """Best-practice loop without a framework: the same Redis writes, pipelined per batch."""
    client = redis.Redis.from_url(url)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap(),
            "group.id": unique("raw-"),
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "fetch.max.bytes": 52428800,
        }
    )
    consumer.assign([TopicPartition(f"events.{aggregate.name}", p, 0) for p in range(aggregate.partitions)])
    seen, began = 0, None
    while seen < total:
        batch = consumer.consume(1000, timeout=1.0)
        if not batch:
            continue
        began = began or time.perf_counter()
        pipe = client.pipeline(transaction=False)
        for msg in batch:
            event = codec.decode(msg.value()).record
            key = f"raw:account:{event['aggregate_id']}"
            if event["event_type"] == "AccountOpened":
                pipe.hset(
                    key,
                    mapping={
                        "owner_id": event["owner_id"],
                        "currency": event["currency"],
                        "balance": 0,
                        "version": 1,
                    },
                )
                pipe.sadd(f"raw:owner:{event['owner_id']}", event["aggregate_id"])
            else:
                pipe.hincrby(key, "balance", event["amount"])
                pipe.hset(key, "version", event["version"])
                pipe.zadd(
                    f"{key}:transactions",
                    {
                        orjson.dumps({"version": event["version"], "amount": event["amount"]}): event[
                            "version"
                        ]
                    },
                )
                pipe.hincrby(f"raw:daily:{event['occurred_at'].date()}:EUR", "deposits", event["amount"])
        pipe.hset("raw:checkpoints", mapping={str(m.partition()): m.offset() for m in batch})
        pipe.execute()
        seen += len(batch)
    consumer.close()
    assert began is not None
    return total / (time.perf_counter() - began)


def ours(aggregate: Aggregate, total: int, url: str, ends: dict[int, int]) -> tuple[float, float]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap(),
        "AGGREGATE": aggregate.name,
        "REDIS_URL": url,
        "PROJECTOR_GENERATION": "1",
        "PROJECTOR_LOG_LEVEL": "warn",
        "PROJECTOR_METRICS_PORT": str(free_port()),
    }
    client = redis.Redis.from_url(url)

    def progress() -> int:
        done = {int(k): int(v) for k, v in client.hgetall("view:accounts:g1:checkpoints").items()}
        return sum(min(done.get(p, -1), o) + 1 for p, o in ends.items())

    end_total = sum(o + 1 for o in ends.values())  # offsets include the transaction markers
    with open(RESULTS / "projector.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "stream_processors.app"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        while progress() == 0:
            time.sleep(0.01)
        began, start = time.perf_counter(), progress()
        while progress() < end_total:
            time.sleep(0.01)
        elapsed = time.perf_counter() - began
        stat = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
    finally:
        process.terminate()
        process.wait(60)
    return (end_total - start) * total / end_total / elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    aggregate = Aggregate.create(bootstrap(), unique("p"), partitions=PARTITIONS)
    EventLog(aggregate).append(deposits([f"b-{i}" for i in range(1000)], args.events))
    ends = last_offsets(aggregate)
    url = redis_url(9)
    redis.Redis.from_url(url).flushdb()
    baseline = raw(aggregate, args.events, url)
    mine, cpu = ours(aggregate, args.events, url, ends)
    redis.Redis.from_url(url).flushdb()
    write(
        "projection",
        [
            {
                "what": "raw: confluent-kafka consumer -> decode -> redis pipeline",
                "events/s": f"{baseline:,.0f}",
                "ratio": "1.00",
            },
            {
                "what": "ours: faust agent -> projection -> MULTI/EXEC + checkpoint (Lua per money event)",
                "events/s": f"{mine:,.0f}",
                "ratio": f"{mine / baseline:.2f}",
            },
        ],
        [
            f"{args.events:,} events (1,000 AccountOpened, the rest MoneyDeposited) over {PARTITIONS} "
            f"partitions, one projector process (CPU {cpu:.1f}s), timed from its first checkpoint to "
            "its last",
            "the raw loop writes the same keys without transactions, checkpoint guard or scripts",
            "targets: >= 0.5x raw and >= 30k events/s per worker process",
        ],
    )


if __name__ == "__main__":
    main()
