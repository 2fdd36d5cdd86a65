"""Reads view hashes from Redis under each view's current generation; knows no write-side model."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import redis.asyncio as redis
from redis.exceptions import NoScriptError

ACCOUNTS = "accounts"
TRANSFERS = "transfers"
SERVED_VIEWS = (ACCOUNTS, TRANSFERS)
_INT_FIELDS = ("balance", "overdraft_limit", "version")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class ViewNotReady(Exception):
    """The view has no current generation yet (no projector has run)."""


class ViewRebuilding(Exception):
    """The current generation is being built from the log (first start, or Redis lost the view):
    answering from it would serve partial data."""


# The generation pointer, its state and the row in one round trip (the hot read). Returns
# {'none'} without a generation, {'rebuilding'} while it is built, else {'ok', generation,
# field, value, ...} (no fields when there is no such row; ARGV[2] = '' reads no row).
_READ_ROW = """
local generation = redis.call('GET', KEYS[1])
if not generation then return {'none'} end
if redis.call('HGET', ARGV[1] .. generation .. ':meta', 'state') == 'rebuilding' then
  return {'rebuilding'}
end
local row = {}
if ARGV[2] ~= '' then row = redis.call('HGETALL', ARGV[1] .. generation .. ARGV[2]) end
table.insert(row, 1, generation)
table.insert(row, 1, 'ok')
return row
"""
_READ_ROW_SHA = hashlib.sha1(_READ_ROW.encode()).hexdigest()


class ViewReader:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    async def _generation_and_row(self, view: str, key: str) -> tuple[int, dict[Any, Any]]:
        args = (f"view:{view}:current", f"view:{view}:g", f":{key}" if key else "")
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

    async def _prefix(self, view: str) -> str:
        generation, _ = await self._generation_and_row(view, "")
        return f"view:{view}:g{generation}:"

    async def account(self, account_id: str) -> dict[str, Any] | None:
        row = await self._row(ACCOUNTS, f"account:{account_id}")
        return None if row is None else _typed(row, _INT_FIELDS)

    async def transfer(self, transfer_id: str) -> dict[str, Any] | None:
        row = await self._row(TRANSFERS, f"transfer:{transfer_id}")
        return None if row is None else _typed(row, ("amount", "version"))

    async def _row(self, view: str, key: str) -> dict[Any, Any] | None:
        _, row = await self._generation_and_row(view, key)
        return row or None

    async def transactions(
        self, account_id: str, after_version: int, limit: int
    ) -> list[dict[str, Any]] | None:
        """Entries oldest first with versions above `after_version`; None when no such account.
        Paging by version keeps pages stable while new transactions are appended."""
        prefix = await self._prefix(ACCOUNTS)
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.exists(f"{prefix}account:{account_id}")
            pipe.zrangebyscore(
                f"{prefix}account:{account_id}:transactions", f"({after_version}", "+inf", start=0, num=limit
            )
            exists, members = await pipe.execute()
        if not exists:
            return None
        return [_entry(orjson.loads(m)) for m in members]

    async def changes(self, account_id: str, after_version: int, limit: int = 500) -> list[dict[str, Any]]:
        """Every change of the account with a version above `after_version`, in version order and
        without gaps: money movements from the transactions, the others from the change log."""
        prefix = await self._prefix(ACCOUNTS)
        async with self.client.pipeline(transaction=False) as pipe:
            for log in ("transactions", "changes"):
                pipe.zrangebyscore(
                    f"{prefix}account:{account_id}:{log}", f"({after_version}", "+inf", start=0, num=limit
                )
            logs = [[orjson.loads(m) for m in members] for members in await pipe.execute()]
        # A full page may continue past its last version: stop there, or another log's later
        # entries would skip the versions the next read brings.
        cap = min((entries[-1]["version"] for entries in logs if len(entries) == limit), default=None)
        merged = sorted((_entry(e) for entries in logs for e in entries), key=lambda e: int(e["version"]))
        return [e for e in merged if cap is None or e["version"] <= cap]

    async def owner_accounts(self, owner_id: str) -> list[dict[str, Any]]:
        prefix = await self._prefix(ACCOUNTS)
        ids = sorted(_text(m) for m in await self.client.smembers(f"{prefix}owner:{owner_id}:accounts"))
        async with self.client.pipeline(transaction=False) as pipe:
            for account_id in ids:
                pipe.hgetall(f"{prefix}account:{account_id}")
            rows = await pipe.execute()
        return [_typed(raw, _INT_FIELDS) for raw in rows if raw]

    async def daily(self, day: str, currency: str) -> dict[str, int]:
        prefix = await self._prefix(ACCOUNTS)
        raw = await self.client.hgetall(f"{prefix}daily:{day}:{currency}")
        totals = {_text(k): int(v) for k, v in raw.items()}
        return {name: totals.get(name, 0) for name in ("deposits", "withdrawals", "count")}

    async def generations(self, view: str, now_ms: int) -> list[dict[str, Any]]:
        """Each generation of the view in Redis: its state, checkpoints and the projector's lag."""
        current_raw = await self.client.get(f"view:{view}:current")
        current = int(current_raw) if current_raw is not None else None
        known = {int(g) for g in await self.client.smembers(f"view:{view}:generations")}
        known |= {current} if current is not None else set()
        ordered = sorted(known)
        async with self.client.pipeline(transaction=False) as pipe:
            for generation in ordered:
                pipe.hgetall(f"view:{view}:g{generation}:checkpoints")
                pipe.hgetall(f"view:{view}:g{generation}:status")
                pipe.hgetall(f"view:{view}:g{generation}:meta")
            rows = await pipe.execute()
        items = []
        for generation, checkpoints, status, meta in zip(
            ordered, rows[::3], rows[1::3], rows[2::3], strict=True
        ):
            fields = {_text(k): int(v) for k, v in status.items()}
            lag = {name[4:]: value for name, value in fields.items() if name.startswith("lag:")}
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
        """Redis answers and every served view has a current generation that is not being rebuilt."""
        try:
            for view in SERVED_VIEWS:
                await self._generation_and_row(view, "")
        except (redis.RedisError, ViewNotReady, ViewRebuilding):
            return False
        return True


def _num(item: tuple[str, int]) -> int:
    return int(item[0])


def _typed(raw: dict[Any, Any], int_fields: tuple[str, ...]) -> dict[str, Any]:
    row: dict[str, Any] = {_text(k): _text(v) for k, v in raw.items()}
    for name in int_fields:
        row[name] = int(row[name])
    return row


def _entry(item: dict[str, Any]) -> dict[str, Any]:
    """Optional fields appear only when set, as the HTTP contract says."""
    return {k: v for k, v in item.items() if v is not None or k not in ("reference", "transfer_id")}
