"""Live projection: events.<agg> -> the faust projector -> Redis views, beside two baselines read
from the same log in the same run: a raw confluent-kafka consume -> decode -> redis pipeline loop,
and faust's own ceiling (bench/faust_ceiling.py: an agent that only takes the events). Run by
bench/report.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable

import orjson
import redis
from confluent_kafka import Consumer, TopicPartition

from bench.common import RESULTS, Figure, Mode, bootstrap, cpu_seconds, kafka, redis_url, unique
from schemas.codec import SingleObjectCodec
from tests.support.kafka import Aggregate
from tests.support.projection import EventLog, deposits, free_port, last_offsets

DB = 9  # the bench's own Redis database (no test uses it), flushed before and after
codec = SingleObjectCodec()


def raw(aggregate: Aggregate, total: int, url: str) -> float:
    """Best-practice loop without a framework: the same Redis writes, pipelined per batch."""
    client = redis.Redis.from_url(url)
    consumer = Consumer(
        kafka(
            **{
                "group.id": unique("raw-"),
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "fetch.max.bytes": 52428800,
            }
        )
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
            event = codec.decode(msg.value() or b"").record
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
                transaction = orjson.dumps({"version": event["version"], "amount": event["amount"]})
                pipe.zadd(f"{key}:transactions", {transaction: event["version"]})
                pipe.hincrby(f"raw:daily:{event['occurred_at'].date()}:EUR", "deposits", event["amount"])
        pipe.hset("raw:checkpoints", mapping={str(m.partition()): m.offset() or 0 for m in batch})
        pipe.execute()
        seen += len(batch)
    consumer.close()
    assert began is not None
    return total / (time.perf_counter() - began)


def _timed(
    module: str, envs: list[dict[str, str]], progress: Callable[[], int], end: int, log: str
) -> tuple[float, float]:
    """Starts `python -m module` once per env, times their progress from the first step to `end`:
    (per s, CPU s of them all)."""
    processes = []
    for n, env in enumerate(envs):
        with open(RESULTS / log.format(n=n), "wb") as out:
            command = [sys.executable, "-m", module]
            processes.append(subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT))

    def exited() -> bool:
        return any(process.poll() is not None for process in processes)

    try:
        deadline = time.monotonic() + 300
        while progress() == 0:
            if exited() or time.monotonic() > deadline:
                raise RuntimeError(f"{module} made no progress; see {RESULTS / log}")
            time.sleep(0.01)
        began, start = time.perf_counter(), progress()
        while progress() < end:
            if exited() or time.monotonic() > deadline:
                raise RuntimeError(f"{module} stopped at {progress()} of {end}; see {RESULTS / log}")
            time.sleep(0.01)
        elapsed = time.perf_counter() - began
        cpu = sum(cpu_seconds(process.pid) for process in processes)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(60)
    return (end - start) / elapsed, cpu


def ours(
    aggregate: Aggregate, total: int, url: str, ends: dict[int, int], workers: int = 1, generation: int = 1
) -> tuple[float, float]:
    """`workers` projector processes in one consumer group (this generation's), over the partitions."""
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap(),
        "AGGREGATE": aggregate.name,
        "REDIS_URL": url,
        "PROJECTOR_GENERATION": str(generation),
        "PROJECTOR_LOG_LEVEL": "warn",
    }
    envs = [{**env, "PROJECTOR_METRICS_PORT": str(free_port())} for _ in range(workers)]
    client = redis.Redis.from_url(url)

    def progress() -> int:
        checkpoints = client.hgetall(f"view:accounts:g{generation}:checkpoints")
        done = {int(k): int(v) for k, v in checkpoints.items()}
        return sum(min(done.get(p, -1), o) + 1 for p, o in ends.items())

    end_total = sum(o + 1 for o in ends.values())  # offsets include the transaction markers
    log = "projector.log" if workers == 1 else f"projector-g{generation}-{{n}}.log"
    rate, cpu = _timed("stream_processors.app", envs, progress, end_total, log)
    return rate * total / end_total, cpu  # offsets per second -> events per second


def ceiling(aggregate: Aggregate, total: int, url: str) -> tuple[float, float]:
    counter = unique("bench:ceiling:")
    env = {
        **os.environ,
        "BENCH_TOPIC": f"events.{aggregate.name}",
        "BENCH_COUNTER": counter,
        "BENCH_WEB_PORT": str(free_port()),
        "REDIS_URL": url,
    }
    client = redis.Redis.from_url(url)
    return _timed(
        "bench.faust_ceiling", [env], lambda: int(client.get(counter) or 0), total, "faust-ceiling.log"
    )


def run(mode: Mode) -> tuple[list[Figure], list[str]]:
    aggregate = Aggregate.create(bootstrap(), unique("p"), partitions=mode.partitions)
    EventLog(aggregate).append(deposits([f"b-{i}" for i in range(1000)], mode.events))
    ends = last_offsets(aggregate)
    url = redis_url(DB)
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        baseline = raw(aggregate, mode.events, url)
        top, top_cpu = ceiling(aggregate, mode.events, url)
        mine, cpu = ours(aggregate, mode.events, url, ends)
        # The same log again, into a new generation each time, by 2 and 4 workers in one group.
        scaling = {1: mine}
        for generation, workers in enumerate(() if mode.quick else (2, 4), start=2):
            scaling[workers] = ours(aggregate, mode.events, url, ends, workers, generation)[0]
    finally:
        client.flushdb()
    figures = [
        Figure(
            "live projection",
            "events/s vs raw",
            mine,
            baseline,
            "confluent-kafka consume -> decode -> redis pipeline, same keys, no transactions",
            ">= 0.5x raw, >= 30k/s",
            mine >= 0.5 * baseline and mine >= 30_000,
        ),
        Figure(
            "live projection",
            "events/s vs faust's ceiling",
            mine,
            top,
            "faust agent that only takes the events (same transport and batch)",
            ">= 0.8x faust's ceiling",
            mine >= 0.8 * top,
        ),
    ]
    notes = [
        f"live projection: {mode.events:,} events (1,000 AccountOpened, the rest MoneyDeposited) over "
        f"{mode.partitions} partitions, one process each, timed from its first checkpoint (count) to "
        "its last; "
        f"CPU: ours {cpu:.1f}s ({cpu / mode.events * 1e6:.0f} us per event), faust ceiling "
        f"{top_cpu:.1f}s ({top_cpu / mode.events * 1e6:.0f} us per event)",
        "live projection by 1, 2 and 4 projector processes in one group over the same partitions "
        "(a new generation each): "
        + ", ".join(f"{n}: {rate:,.0f} events/s ({rate / mine:.2f}x)" for n, rate in scaling.items())
        + f" on {os.cpu_count()} cores, beside the broker and Redis",
    ]
    return figures, notes
