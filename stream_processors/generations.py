"""A view's generations in Redis: which one is current, each one's state and bookkeeping, the atomic
flip from one to the next, removing a retired one, and a digest of a generation's data. The keys
are described in stream_processors/layout.py.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis
from redis.exceptions import WatchError

from stream_processors import layout


def int_map(raw: Mapping[bytes, bytes], prefix: str = "") -> dict[int, int]:
    """{partition: offset} from a hash of `<prefix><partition>` fields (checkpoints, meta targets)."""
    out = {}
    for key, value in raw.items():
        name = key.decode()
        if name.startswith(prefix) and name[len(prefix) :].isdigit():
            out[int(name[len(prefix) :])] = int(value)
    return out


@dataclass(frozen=True)
class GenerationInfo:
    generation: int
    state: str  # rebuilding | live | retired | unknown (no meta: made before generations had one)
    reason: str
    created_at_ms: int | None
    targets: dict[int, int]
    checkpoints: dict[int, int]

    def behind(self) -> dict[int, int]:
        """Events per partition still to apply before the targets are reached."""
        return behind(self.checkpoints, self.targets)


def behind(checkpoints: Mapping[int, int], targets: Mapping[int, int]) -> dict[int, int]:
    """Offsets per partition between a generation's checkpoints and its targets (empty: caught up)."""
    return {
        p: target - checkpoints.get(p, -1) for p, target in targets.items() if checkpoints.get(p, -1) < target
    }


class Generations:
    def __init__(self, client: redis.Redis, view: str) -> None:
        self.client: Any = client  # redis-py's sync types are unions with its async ones
        self.view = view

    def current(self) -> int | None:
        raw = self.client.get(layout.current(self.view))
        return int(raw) if raw is not None else None

    def known(self) -> list[int]:
        members = self.client.smembers(layout.generations(self.view))
        current = self.current()
        return sorted({int(m) for m in members} | ({current} if current is not None else set()))

    def with_keys(self) -> set[int]:
        """Every generation that has keys in Redis (a scan of the view's keys)."""
        stem = layout.generation_stem(self.view)
        found = set()
        for key in self.client.scan_iter(match=f"{stem}*", count=1000):
            number = key.decode()[len(stem) :].split(":", 1)[0]
            if number.isdigit():
                found.add(int(number))
        return found

    def info(self, generation: int) -> GenerationInfo:
        raw_meta = self.client.hgetall(layout.meta(self.view, generation))
        meta = {k.decode(): v.decode() for k, v in raw_meta.items()}
        return GenerationInfo(
            generation=generation,
            state=meta.get("state", "unknown"),
            reason=meta.get("reason", ""),
            created_at_ms=int(meta["created_at_ms"]) if "created_at_ms" in meta else None,
            targets=int_map(raw_meta, layout.TARGET),
            checkpoints=self.checkpoints(generation),
        )

    def has_meta(self, generation: int) -> bool:
        return bool(self.client.exists(layout.meta(self.view, generation)))

    def recorded_commits(self, generation: int) -> dict[int, int]:
        """The group offsets the generation's readers committed last (see ViewWriter.record_commits)."""
        return int_map(self.client.hgetall(layout.committed(self.view, generation)))

    def checkpoints(self, generation: int) -> dict[int, int]:
        return int_map(self.client.hgetall(layout.checkpoints(self.view, generation)))

    def create(
        self,
        generation: int,
        *,
        reason: str,
        targets: Mapping[int, int],
        from_time: str = "",
        checkpoints: Mapping[int, int] | None = None,
    ) -> None:
        """Registers a generation being built, with the events it must reach before it may serve
        (and checkpoints for partitions where it starts past them: nothing to apply there)."""
        with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(layout.meta(self.view, generation))
            if checkpoints:
                pipe.hset(
                    layout.checkpoints(self.view, generation),
                    mapping={str(p): o for p, o in checkpoints.items()},
                )
            mapping: dict[str, str | int] = {
                "state": "rebuilding",
                "reason": reason,
                "created_at_ms": int(time.time() * 1000),
                "from_time": from_time,
            }
            mapping.update({f"{layout.TARGET}{p}": o for p, o in targets.items()})
            pipe.hset(layout.meta(self.view, generation), mapping=mapping)
            pipe.sadd(layout.generations(self.view), generation)
            pipe.execute()

    def adopt(self, generation: int, expected_current: int | None) -> bool:
        """Makes a generation being rebuilt from scratch the current one (queries answer 503 until
        it is live), unless another process changed `current` meanwhile."""
        with self.client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(layout.current(self.view))
                raw = pipe.get(layout.current(self.view))
                if (int(raw) if raw is not None else None) != expected_current:
                    return False
                pipe.multi()
                pipe.set(layout.current(self.view), generation)
                pipe.execute()
                return True
            except WatchError:
                return False

    def flip(self, new: int) -> bool:
        """Atomically makes `new` current, only if it has applied at least what the current one
        has on every partition: a reader never sees a value older than one it saw before. False
        when it is still behind (try again later)."""
        while True:
            with self.client.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(layout.current(self.view))
                    raw = pipe.get(layout.current(self.view))
                    old = int(raw) if raw is not None else None
                    if old == new:
                        return True
                    if old is not None:
                        pipe.watch(layout.checkpoints(self.view, old), layout.checkpoints(self.view, new))
                        served = int_map(pipe.hgetall(layout.checkpoints(self.view, old)))
                        built = int_map(pipe.hgetall(layout.checkpoints(self.view, new)))
                        if any(built.get(p, -1) < offset for p, offset in served.items()):
                            return False
                    pipe.multi()
                    pipe.set(layout.current(self.view), new)
                    pipe.hset(layout.meta(self.view, new), "state", "live")
                    if old is not None:
                        pipe.hset(layout.meta(self.view, old), "state", "retired")
                    pipe.execute()
                    return True
                except WatchError:
                    continue

    def drop(self, generation: int, batch: int = 1000) -> int:
        """Removes every key of a generation (never the current one). Returns how many."""
        if self.current() == generation:
            raise ValueError(f"generation {generation} of {self.view} is current; flip first")
        removed = 0
        keys: list[bytes] = []
        for key in self.client.scan_iter(match=layout.scan_pattern(self.view, generation), count=batch):
            keys.append(key)
            if len(keys) >= batch:
                removed += int(self.client.unlink(*keys))
                keys = []
        if keys:
            removed += int(self.client.unlink(*keys))
        self.client.srem(layout.generations(self.view), generation)
        return removed

    def digest(self, generation: int) -> tuple[str, int]:
        """sha256 over every data key of a generation (generation stripped from the name) and its
        content, type-aware; bookkeeping (checkpoints, status, meta) is left out."""
        prefix = layout.prefix(self.view, generation)
        pattern = layout.scan_pattern(self.view, generation)
        keys = sorted(
            name
            for name in (k.decode() for k in self.client.scan_iter(match=pattern, count=1000))
            if name[len(prefix) :] not in layout.BOOKKEEPING
        )
        sha = hashlib.sha256()
        for key in keys:
            sha.update(key[len(prefix) :].encode())
            kind = self.client.type(key)
            if kind == b"hash":
                items = sorted(self.client.hgetall(key).items())
            elif kind == b"zset":
                items = [(m, str(s).encode()) for m, s in self.client.zrange(key, 0, -1, withscores=True)]
            elif kind == b"set":
                items = [(m, b"") for m in sorted(self.client.smembers(key))]
            else:
                raise ValueError(f"{key} has unexpected type {kind!r}")
            for field, value in items:
                sha.update(b"\0" + field + b"=" + value)
        return sha.hexdigest(), len(keys)
