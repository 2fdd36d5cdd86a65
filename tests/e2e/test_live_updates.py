"""Live updates over server-sent events, on the real pipeline: order, resume after a disconnect."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest

from tests.e2e.conftest import Services
from tests.e2e.test_slice import read_until

pytestmark = pytest.mark.e2e


@dataclass
class ServerSentEvent:
    event: str
    id: int
    data: dict[str, Any]


class EventStream:
    """A minimal SSE reader: comments and `retry:` lines are skipped, events returned whole."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.iter_lines()

    def next(self) -> ServerSentEvent:
        fields: dict[str, str] = {}
        for line in self.lines:
            if line == "":
                if "data" in fields:
                    return ServerSentEvent(fields["event"], int(fields["id"]), orjson.loads(fields["data"]))
                fields = {}
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(": ")
            fields[name] = value
        raise AssertionError("the stream ended")


@contextmanager
def stream(queries: httpx.Client, account: str, last_event_id: int | None = None) -> Iterator[EventStream]:
    headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
    timeout = httpx.Timeout(5, read=15)
    with queries.stream("GET", f"/accounts/{account}/stream", headers=headers, timeout=timeout) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield EventStream(response)


def test_three_deposits_arrive_in_order_and_a_reconnect_resumes_without_gaps(
    running: Services, unique: str
) -> None:
    c, q = running.commands, running.queries
    account = c.post("/accounts", json={"owner_id": f"sse-{unique}", "currency": "EUR"}).json()["account_id"]
    read_until(q, f"/accounts/{account}", lambda r: r.status_code == 200)

    with stream(q, account) as events:
        first = events.next()
        assert (first.event, first.id) == ("account", 1)
        assert first.data["account_id"] == account and first.data["balance"] == 0
        for amount in (100, 200, 300):
            assert c.post(f"/accounts/{account}/deposits", json={"amount": amount}).status_code == 200
        seen = [events.next() for _ in range(3)]
    assert [(e.event, e.id, e.data["type"], e.data["amount"], e.data["balance_after"]) for e in seen] == [
        ("change", 2, "deposit", 100, 100),
        ("change", 3, "deposit", 200, 300),
        ("change", 4, "deposit", 300, 600),
    ]

    # Disconnected: three more changes, one of them not a money movement.
    c.post(f"/accounts/{account}/deposits", json={"amount": 5})
    c.patch(f"/accounts/{account}", json={"overdraft_limit": 50})
    c.post(f"/accounts/{account}/withdrawals", json={"amount": 10})
    with stream(q, account, last_event_id=seen[-1].id) as events:
        resumed = [events.next() for _ in range(3)]
        c.post(f"/accounts/{account}/deposits", json={"amount": 1})
        live = events.next()
    assert [(e.id, e.data["type"]) for e in resumed] == [
        (5, "deposit"),
        (6, "overdraft_limit_changed"),
        (7, "withdrawal"),
    ]
    assert resumed[1].data["overdraft_limit"] == 50 and resumed[2].data["balance_after"] == 595
    assert (live.id, live.data["type"], live.data["balance_after"]) == (8, "deposit", 596)


def test_stream_errors(running: Services, unique: str) -> None:
    q = running.queries
    assert q.get(f"/accounts/nobody-{unique}/stream").status_code == 404
    bad = q.get(f"/accounts/nobody-{unique}/stream", headers={"Last-Event-ID": "v3"})
    assert bad.status_code == 422 and bad.json()["error"] == "validation_error"
