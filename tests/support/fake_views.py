"""An in-memory view store: the ViewStore and ViewReads ports (stream_processors/store.py) without
Redis, for tests that inject adapters. It must behave as the Redis adapters do, which
tests/integration/test_view_store_contract.py checks by running the same tests over both."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from stream_processors import layout
from stream_processors.generations import behind
from stream_processors.ops import (
    Exists,
    Hash,
    HashIncrement,
    HashSet,
    Members,
    MoneyMoved,
    Op,
    Read,
    ScoreAfter,
    SetAdd,
    SortedSetAdd,
)
from stream_processors.store import GenerationState, ProjectedEvent, ViewNotReady, ViewRebuilding, lost


class FakeViews:
    """Every view's keys, by Redis type; values are text, as Redis returns them."""

    def __init__(self) -> None:
        self.strings: dict[str, str] = {}
        self.hashes: defaultdict[str, dict[str, str]] = defaultdict(dict)
        self.sets: defaultdict[str, set[str]] = defaultdict(set)
        self.zsets: defaultdict[str, dict[str, int]] = defaultdict(dict)
        self.published: list[tuple[str, dict[str, Any]]] = []

    def set_current(self, view: str, generation: int, meta: Mapping[str, str] | None = None) -> None:
        self.strings[layout.current(view)] = str(generation)
        self.hashes[layout.meta(view, generation)].update(meta or {})

    def exists(self, key: str) -> bool:
        return bool(
            self.strings.get(key) or self.hashes.get(key) or self.sets.get(key) or self.zsets.get(key)
        )


class FakeViewStore:
    """A ViewStore: one generation of one view."""

    def __init__(self, views: FakeViews, view: str, generation: int) -> None:
        self.views, self.view, self.generation = views, view, generation
        self.prefix = layout.prefix(view, generation)
        self.known_checkpoints: dict[int, int] = {}
        self.serving = True

    @property
    def _checkpoints(self) -> dict[str, str]:
        return self.views.hashes[layout.checkpoints(self.view, self.generation)]

    async def apply(self, events: Sequence[ProjectedEvent]) -> list[ProjectedEvent]:
        # No await inside: nothing else runs in between, as nothing runs inside a MULTI/EXEC.
        partitions = {e.partition for e in events}
        stored = {p: int(self._checkpoints.get(str(p), -1)) for p in partitions}
        lost(self.view, self.generation, self.known_checkpoints, stored)
        applied = []
        for event in events:
            if event.offset <= int(self._checkpoints.get(str(event.partition), -1)):
                continue
            for op in event.ops:
                self._apply(op)
            self._checkpoints[str(event.partition)] = str(event.offset)
            applied.append(event)
        for partition in {e.partition for e in events}:
            if str(partition) in self._checkpoints:
                self.known_checkpoints[partition] = int(self._checkpoints[str(partition)])
        return applied

    async def load_checkpoints(self, partitions: Sequence[int]) -> dict[int, int]:
        found = {p: int(self._checkpoints[str(p)]) for p in partitions if str(p) in self._checkpoints}
        lost(self.view, self.generation, self.known_checkpoints, {p: found.get(p, -1) for p in partitions})
        for p, cp in found.items():
            self.known_checkpoints[p] = max(cp, self.known_checkpoints.get(p, -1))
        return found

    async def record_commits(self, offsets: Mapping[int, int]) -> None:
        committed = self.views.hashes[layout.committed(self.view, self.generation)]
        committed.update({str(p): str(o) for p, o in offsets.items()})

    async def apply_once(self, marker: str, ops: Sequence[Op]) -> bool:
        replayed = self.views.sets[layout.replayed(self.view, self.generation)]
        if marker in replayed:
            return False
        for op in ops:
            self._apply(op)
        replayed.add(marker)
        return True

    async def notify(self, applied: Sequence[ProjectedEvent]) -> None:
        if not self.serving:
            return
        newest = {e.subject: e for e in applied if e.subject is not None}
        for subject, e in newest.items():
            message = {"version": e.version, "partition": e.partition, "offset": e.offset}
            self.views.published.append((layout.changes_channel(self.view, subject), message))

    async def publish_status(self, lags: dict[int, int], now_ms: int) -> None:
        status = self.views.hashes[layout.status(self.view, self.generation)]
        status.update({f"{layout.LAG}{p}": str(lag) for p, lag in lags.items()})
        status["updated_at_ms"] = str(now_ms)

    async def generation_state(self) -> GenerationState:
        current = self.views.strings.get(layout.current(self.view))
        meta = self.views.hashes.get(layout.meta(self.view, self.generation), {})
        checkpoints = {int(p): int(o) for p, o in self._checkpoints.items()}
        targets = {
            int(k[len(layout.TARGET) :]): int(v) for k, v in meta.items() if k.startswith(layout.TARGET)
        }
        return GenerationState(
            current=int(current) if current is not None else None,
            meta_state=meta.get("state"),
            caught_up=not behind(checkpoints, targets),
        )

    async def go_live(self) -> None:
        self.views.hashes[layout.meta(self.view, self.generation)]["state"] = "live"

    def _apply(self, op: Op) -> None:
        views, prefix = self.views, self.prefix
        match op:
            case HashSet(key, fields):
                views.hashes[prefix + key].update({k: str(v) for k, v in fields.items()})
            case HashIncrement(key, field, amount):
                row = views.hashes[prefix + key]
                row[field] = str(int(row.get(field, 0)) + amount)
            case SetAdd(key, member):
                views.sets[prefix + key].add(member)
            case SortedSetAdd(key, score, member):
                views.zsets[prefix + key][member] = score
            case MoneyMoved():  # what view_writer.MONEY_MOVED does in Redis
                summary = views.hashes[prefix + op.account_key]
                balance = int(summary.get("balance", 0)) + op.delta
                summary.update(
                    {"balance": str(balance), "version": str(op.version), "updated_at": op.updated_at}
                )
                entry = orjson.dumps({**op.entry, "balance_after": balance}).decode()
                views.zsets[prefix + op.transactions_key][entry] = op.version
                if op.daily and "currency" in summary:
                    daily = views.hashes[prefix + op.daily_prefix + summary["currency"]]
                    figure = "deposits" if op.delta >= 0 else "withdrawals"
                    for name, amount in ((figure, abs(op.delta)), ("count", 1)):
                        daily[name] = str(int(daily.get(name, 0)) + amount)


class FakeViewReads:
    """ViewReads: the current generation of any view."""

    def __init__(self, views: FakeViews) -> None:
        self.views = views

    def _prefix(self, view: str) -> str:
        current = self.views.strings.get(layout.current(view))
        if current is None:
            raise ViewNotReady(f"the {view} view has no generation yet")
        if self.views.hashes.get(layout.meta(view, int(current)), {}).get("state") == "rebuilding":
            raise ViewRebuilding(f"the {view} view is being rebuilt from the log; it answers when caught up")
        return layout.prefix(view, int(current))

    async def row(self, view: str, key: str) -> dict[str, str] | None:
        return dict(self.views.hashes.get(self._prefix(view) + key, {})) or None

    async def read(self, view: str, *reads: Read) -> list[Any]:
        prefix, views, results = self._prefix(view), self.views, list[Any]()
        for read in reads:
            match read:
                case Hash(key):
                    results.append(dict(views.hashes.get(prefix + key, {})))
                case Exists(key):
                    results.append(views.exists(prefix + key))
                case Members(key):
                    results.append(set(views.sets.get(prefix + key, set())))
                case ScoreAfter(key, after, limit):
                    ranked = sorted(
                        views.zsets.get(prefix + key, {}).items(), key=lambda item: (item[1], item[0])
                    )
                    results.append([member for member, score in ranked if score > after][:limit])
        return results
