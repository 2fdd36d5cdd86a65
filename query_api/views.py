"""The Redis adapter of ViewReads (stream_processors/store.py): reads under each view's current
generation, for the views' queries (stream_processors/views/*) and the operational routes. Knows
no write-side model and no view's rows."""

from __future__ import annotations

import hashlib
from typing import Any

import redis.asyncio as redis
from redis.exceptions import NoScriptError

from stream_processors import layout
from stream_processors.ops import Exists, Hash, Members, Read, ScoreAfter
from stream_processors.store import ViewNotReady, ViewRebuilding
from stream_processors.views.registry import VIEWS

SERVED_VIEWS = tuple(name for name, spec in VIEWS.items() if spec.queried)
READINESS_VIEWS = tuple(name for name in SERVED_VIEWS if VIEWS[name].gates_readiness)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# The generation pointer, its state and the row in one round trip (the hot read). Returns
# {'none'} without a generation, {'rebuilding'} while it is built, else {'ok', generation,
# field, value, ...} (no fields when there is no such row; ARGV[3] = '' reads no row).
# KEYS[1] = layout.current; a generation's key is ARGV[1] .. generation .. ARGV[2 or 3].
_READ_ROW = """
local generation = redis.call('GET', KEYS[1])
if not generation then return {'none'} end
if redis.call('HGET', ARGV[1] .. generation .. ARGV[2], 'state') == 'rebuilding' then
  return {'rebuilding'}
end
local row = {}
if ARGV[3] ~= '' then row = redis.call('HGETALL', ARGV[1] .. generation .. ARGV[3]) end
table.insert(row, 1, generation)
table.insert(row, 1, 'ok')
return row
"""
_READ_ROW_SHA = hashlib.sha1(_READ_ROW.encode()).hexdigest()


class ViewReader:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    async def _generation_and_row(self, view: str, key: str) -> tuple[int, dict[Any, Any]]:
        args = (
            layout.current(view),
            layout.generation_stem(view),
            f":{layout.META}",
            f":{key}" if key else "",
        )
        # EVALSHA directly: redis-py's Script object spends ~10 % of a read in isinstance checks.
        try:
            reply = await self.client.evalsha(_READ_ROW_SHA, 1, *args)
        except NoScriptError:  # a new or flushed server: load it once
            await self.client.script_load(_READ_ROW)
            reply = await self.client.evalsha(_READ_ROW_SHA, 1, *args)
        status = _text(reply[0])
        if status == "none":
            raise ViewNotReady(f"the {view} view has no generation yet")
        if status == "rebuilding":
            raise ViewRebuilding(f"the {view} view is being rebuilt from the log; it answers when caught up")
        return int(reply[1]), dict(zip(reply[2::2], reply[3::2], strict=True))

    async def row(self, view: str, key: str) -> dict[str, str] | None:
        _, row = await self._generation_and_row(view, key)
        return {_text(k): _text(v) for k, v in row.items()} or None

    async def read(self, view: str, *reads: Read) -> list[Any]:
        generation, _ = await self._generation_and_row(view, "")
        prefix = layout.prefix(view, generation)
        async with self.client.pipeline(transaction=False) as pipe:
            for read in reads:
                match read:
                    case Hash(key):
                        pipe.hgetall(prefix + key)
                    case Exists(key):
                        pipe.exists(prefix + key)
                    case Members(key):
                        pipe.smembers(prefix + key)
                    case ScoreAfter(key, after, limit):
                        pipe.zrangebyscore(prefix + key, f"({after}", "+inf", start=0, num=limit)
            replies = await pipe.execute()
        results: list[Any] = []
        for read, reply in zip(reads, replies, strict=True):
            match read:
                case Hash():
                    results.append({_text(k): _text(v) for k, v in reply.items()})
                case Exists():
                    results.append(bool(reply))
                case Members():
                    results.append({_text(m) for m in reply})
                case ScoreAfter():
                    results.append([_text(m) for m in reply])
        return results

    async def generations(self, view: str, now_ms: int) -> list[dict[str, Any]]:
        """Each generation of the view in Redis: its state, checkpoints and the projector's lag."""
        current_raw = await self.client.get(layout.current(view))
        current = int(current_raw) if current_raw is not None else None
        known = {int(g) for g in await self.client.smembers(layout.generations(view))}
        known |= {current} if current is not None else set()
        ordered = sorted(known)
        async with self.client.pipeline(transaction=False) as pipe:
            for generation in ordered:
                pipe.hgetall(layout.checkpoints(view, generation))
                pipe.hgetall(layout.status(view, generation))
                pipe.hgetall(layout.meta(view, generation))
            rows = await pipe.execute()
        items = []
        for generation, checkpoints, status, meta in zip(
            ordered, rows[::3], rows[1::3], rows[2::3], strict=True
        ):
            fields = {_text(k): int(v) for k, v in status.items()}
            lag = {name[len(layout.LAG) :]: v for name, v in fields.items() if name.startswith(layout.LAG)}
            seen = fields.get("updated_at_ms")
            about = {_text(k): _text(v) for k, v in meta.items()}
            state = about.get("state") or ("live" if generation == current else "retired")
            items.append(
                {
                    "name": view,
                    "generation": generation,
                    "current_generation": current,
                    "state": state,
                    "reason": about.get("reason", ""),
                    "checkpoints": dict(
                        sorted(((_text(k), int(v)) for k, v in checkpoints.items()), key=_num)
                    ),
                    "lag": dict(sorted(lag.items(), key=_num)),
                    "lag_total": sum(lag.values()),
                    "reported_ms_ago": None if seen is None else max(0, now_ms - seen),
                }
            )
        return items

    async def ready(self) -> bool:
        """Redis answers and every view that gates readiness has a current generation that is not
        being rebuilt."""
        try:
            for view in READINESS_VIEWS:
                await self._generation_and_row(view, "")
        except (redis.RedisError, ViewNotReady, ViewRebuilding):
            return False
        return True


def _num(item: tuple[str, int]) -> int:
    return int(item[0])
