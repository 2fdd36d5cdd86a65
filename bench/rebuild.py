"""Rebuild of a view from its log: `Rebuilder.rebuild` (new generation, its own consumer group,
projector workers, atomic flip) beside a raw consume -> decode -> pipeline loop over the same log.

Usage: python bench/rebuild.py [--events N] [--workers N]
Writes N events (deposits over 1,000 accounts, transactions of 2,000) to private topics; both
readers write into a Redis database of their own (db 8), flushed before and after.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import RESULTS, bootstrap, unique, write
from bench.projection import raw, redis_url
from stream_processors.generations import Generations
from stream_processors.rebuild import Progress, Rebuilder
from tests.support.kafka import Aggregate
from tests.support.projection import EventLog, deposits

PARTITIONS = 12


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    aggregate = Aggregate.create(bootstrap(), unique("r"), partitions=PARTITIONS)
    began = time.perf_counter()
    EventLog(aggregate).append(deposits([f"b-{i}" for i in range(1000)], args.events), per_transaction=2000)
    print(f"wrote {args.events:,} events in {time.perf_counter() - began:.0f}s", flush=True)
    url = redis_url(8)
    client = redis.Redis.from_url(url)
    client.flushdb()

    raw_began = time.perf_counter()
    raw_rate = raw(aggregate, args.events, url)
    raw_seconds = time.perf_counter() - raw_began
    print(f"raw: {raw_rate:,.0f} events/s", flush=True)
    client.flushdb()

    # The view serves generation 1 (empty); the rebuild builds generation 2 from the whole log.
    gens = Generations(client, "accounts")
    gens.create(1, reason="bench", targets={})
    gens.flip(1)
    last = [time.monotonic()]

    def report(progress: Progress) -> None:
        if time.monotonic() - last[0] >= 10:
            last[0] = time.monotonic()
            print(
                f"  {progress.phase}: {progress.done:,}/{progress.total:,} at {progress.events_per_s:,.0f}/s"
            )

    rebuilder = Rebuilder(
        "accounts",
        redis_url=url,
        bootstrap=bootstrap(),
        log_dir=RESULTS / "rebuild-logs",
        source=aggregate.name,
    )
    result = rebuilder.rebuild(
        workers=args.workers,
        on_progress=report,
        grace_s=0,
        worker_env={"PROJECTOR_LOG_LEVEL": "warn", "REDIS_URL": url, "KAFKA_BOOTSTRAP_SERVERS": bootstrap()},
    )
    keys = sum(1 for _ in client.scan_iter(match="view:accounts:g2:*", count=1000))
    client.flushdb()
    ours_rate = result.events_per_s
    write(
        "rebuild",
        [
            {
                "what": "raw consume -> decode -> redis pipeline (no transactions, no checkpoints)",
                "events": f"{args.events:,}",
                "seconds": f"{raw_seconds:.1f}",
                "events/s": f"{raw_rate:,.0f}",
            },
            {
                "what": f"cqrs views rebuild ({args.workers} catch-up workers, start to flip)",
                "events": f"{result.events:,}",
                "seconds": f"{result.seconds:.1f}",
                "events/s": f"{ours_rate:,.0f}",
            },
            {
                "what": "ours / raw (time)",
                "events": "",
                "seconds": f"{result.seconds / raw_seconds:.2f}x",
                "events/s": f"{ours_rate / raw_rate:.2f}x",
            },
        ],
        [
            f"{PARTITIONS} partitions, 1,000 accounts, events in transactions of 2,000; the new generation "
            f"has {keys:,} keys; start to flip includes creating the group, finding the log's last events "
            "and starting the workers",
            f"raw: one process; ours: {args.workers} catch-up workers (a confluent-kafka loop on "
            "assigned partitions feeding the projector's own Projector and ViewWriter: MULTI/EXEC with "
            "checkpoints, Lua per money event); the broker and Redis share the same 2 cores",
            "targets: <= 2x raw and <= 30 s for 1,000,000 events",
        ],
    )


if __name__ == "__main__":
    main()
