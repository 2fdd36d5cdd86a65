"""Live updates of one account as server-sent events: every change after a version, in order and
without gaps, read from the view's logs and woken by the projector's notifications."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from query_api.notifications import ChangeNotifications
from stream_processors.store import ViewNotReady, ViewReads, ViewRebuilding
from stream_processors.views import accounts

# What ends a stream early: the store cannot answer (Redis unreachable or stopped, or the view
# lost and being rebuilt).
UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, ViewNotReady, ViewRebuilding)


def frame(event: str, event_id: int, data: dict[str, Any]) -> bytes:
    return b"event: %s\nid: %d\ndata: %s\n\n" % (event.encode(), event_id, orjson.dumps(data))


def unavailable(exc: Exception) -> bytes:
    """The last frame of a stream the store stopped answering: no `id`, so the client's last event
    id stays the last change it got; the error as the query API's 503 body; reconnect in 2 s."""
    codes = {ViewNotReady: "view_not_ready", ViewRebuilding: "view_rebuilding"}
    error = codes.get(type(exc), "store_unavailable")
    body = orjson.dumps({"error": error, "detail": str(exc) or type(exc).__name__})
    return b"retry: 2000\nevent: unavailable\ndata: %s\n\n" % body


async def account_events(
    reader: ViewReads,
    notifications: ChangeNotifications,
    account_id: str,
    *,
    summary: dict[str, Any] | None,
    after_version: int,
    keepalive_s: float,
    recheck_s: float = 1.0,
) -> AsyncIterator[bytes]:
    """`summary` (a fresh connection) is sent first as an `account` event; then each change with a
    higher version as a `change` event whose id is its version, so a reconnecting client's
    Last-Event-ID resumes right after the last change it saw."""
    with notifications.watch(account_id) as changed:
        yield b"retry: 1000\n\n"
        last = after_version
        if summary is not None:
            last = summary["version"]
            yield frame("account", last, summary)
        quiet_s = 0.0
        while True:
            changed.clear()  # before the read: a change committed after it sets the flag again
            try:
                found = await accounts.changes(reader, account_id, last)
            except UNAVAILABLE as exc:
                # End the stream cleanly (never a broken chunked body): EventSource reconnects
                # with Last-Event-ID = the last change sent, and resumes with no gap.
                yield unavailable(exc)
                return
            for change in found:
                last = change["version"]
                yield frame("change", last, change)
                quiet_s = 0.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), recheck_s)  # re-check even if a notice is lost
                continue
            quiet_s += recheck_s
            if quiet_s >= keepalive_s:
                quiet_s = 0.0
                yield b": keepalive\n\n"
