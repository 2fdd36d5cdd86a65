"""Rebuild of a view from its log: `Rebuilder.rebuild` (what `cqrs views rebuild` runs: a new
generation, its own consumer group, catch-up workers, the atomic flip) beside a raw consume ->
decode -> pipeline loop over the same log. Both write into the bench's Redis database (db 8),
flushed before and after. Run by bench/report.py."""

from __future__ import annotations

import time

import redis

from bench.common import RESULTS, Figure, Mode, bootstrap, redis_url, unique
from bench.projection import raw
from stream_processors.generations import Generations
from stream_processors.rebuild import Progress, Rebuilder
from tests.support.kafka import Aggregate
from tests.support.projection import EventLog, deposits

DB = 8


def run(mode: Mode, workers: int = 2) -> tuple[list[Figure], list[str]]:
    events = mode.rebuild_events
    aggregate = Aggregate.create(bootstrap(), unique("r"), partitions=mode.partitions)
    began = time.perf_counter()
    EventLog(aggregate).append(deposits([f"b-{i}" for i in range(1000)], events), per_transaction=2000)
    print(f"  rebuild: wrote {events:,} events in {time.perf_counter() - began:.0f}s", flush=True)
    url = redis_url(DB)
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        raw_began = time.perf_counter()
        raw_rate = raw(aggregate, events, url)
        raw_seconds = time.perf_counter() - raw_began
        client.flushdb()

        # The view serves generation 1 (empty); the rebuild builds generation 2 from the whole log.
        gens = Generations(client, "accounts")
        gens.create(1, reason="bench", targets={})
        gens.flip(1)
        last = [time.monotonic()]

        def report(progress: Progress) -> None:
            if time.monotonic() - last[0] >= 10:
                last[0] = time.monotonic()
                print(f"  rebuild {progress.phase}: {progress.done:,}/{progress.total:,}", flush=True)

        rebuilder = Rebuilder(
            "accounts",
            redis_url=url,
            bootstrap=bootstrap(),
            log_dir=RESULTS / "rebuild-logs",
            source=aggregate.name,
        )
        result = rebuilder.rebuild(
            workers=workers,
            on_progress=report,
            grace_s=0,
            worker_env={
                "PROJECTOR_LOG_LEVEL": "warn",
                "REDIS_URL": url,
                "KAFKA_BOOTSTRAP_SERVERS": bootstrap(),
            },
        )
        keys = sum(1 for _ in client.scan_iter(match="view:accounts:g2:*", count=1000))
    finally:
        client.flushdb()
    seconds_target = 30 * events / 1_000_000
    figures = [
        Figure(
            "rebuild",
            f"seconds for {events:,} events (start to flip)",
            result.seconds,
            raw_seconds,
            "confluent-kafka consume -> decode -> redis pipeline over the same log",
            f"<= 2x raw, <= {seconds_target:g} s",
            result.seconds <= 2 * raw_seconds and result.seconds <= seconds_target,
            higher_is_better=False,
        ),
    ]
    notes = [
        f"rebuild: {events:,} events, {mode.partitions} partitions, 1,000 accounts, transactions of 2,000; "
        f"{workers} catch-up workers ({result.events_per_s:,.0f} events/s; raw {raw_rate:,.0f}/s); the "
        f"new generation has {keys:,} keys; start to flip includes creating the group, finding the "
        "log's end and starting the workers (the target scales 30 s per 1M events)",
    ]
    return figures, notes
