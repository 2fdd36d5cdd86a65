"""Live updates of one account as server-sent events: every change after a version, in order and
without gaps, read from the view's logs and woken by the projector's notifications."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson

from query_api.notifications import ChangeNotifications
from stream_processors.store import ViewReads
from stream_processors.views import accounts


def frame(event: str, event_id: int, data: dict[str, Any]) -> bytes:
    return b"event: %s\nid: %d\ndata: %s\n\n" % (event.encode(), event_id, orjson.dumps(data))


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
            for change in await accounts.changes(reader, account_id, last):
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
