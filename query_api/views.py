"""Reads view hashes from Redis under each view's current generation; knows no write-side model."""

from __future__ import annotations

from typing import Any

import redis.asyncio as redis

ACCOUNTS = "accounts"
_INT_FIELDS = ("balance", "overdraft_limit", "version")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class ViewNotReady(Exception):
    """The view has no current generation yet (no projector has run)."""


class ViewReader:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    async def _prefix(self, view: str) -> str:
        generation = await self.client.get(f"view:{view}:current")
        if generation is None:
            raise ViewNotReady(f"the {view} view has no generation yet")
        return f"view:{view}:g{int(generation)}:"

    async def account(self, account_id: str) -> dict[str, Any] | None:
        prefix = await self._prefix(ACCOUNTS)
        raw = await self.client.hgetall(f"{prefix}account:{account_id}")
        if not raw:
            return None
        account: dict[str, Any] = {_text(k): _text(v) for k, v in raw.items()}
        for name in _INT_FIELDS:
            account[name] = int(account[name])
        return account
