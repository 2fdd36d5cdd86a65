"""A browser as a real client of the query API: Debian's headless Chromium opens a page on another
origin, which reads an account and follows its live stream through the gateway (CORS, a bearer token
for reads, a stream token for the EventSource). The query API is restarted under it: the page must
resume with no gap and no repeat."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from auth.tokens import ACCOUNTS_READ, ACCOUNTS_WRITE
from infra.debian import ensure_program
from tests.e2e.conftest import GATEWAY_PORT, PAGE_ORIGIN, Services
from tests.support.tokens import bearer, token

pytestmark = pytest.mark.e2e

PAGE = Path(__file__).parent / "browser" / "page.html"


class PageServer(http.server.ThreadingHTTPServer):
    """The page's own origin: serves page.html, and collects what the page reports at POST /log."""

    def __init__(self, port: int) -> None:
        self.log: list[dict[str, Any]] = []
        super().__init__(("127.0.0.1", port), _Handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: PageServer

    def do_GET(self) -> None:
        body = PAGE.read_bytes()
        self.send_response(200)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        entry = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self.server.log.append(entry)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_: Any) -> None: ...


@pytest.fixture
def page_server() -> Iterator[PageServer]:
    server = PageServer(int(PAGE_ORIGIN.rsplit(":", 1)[1]))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def chromium() -> str:
    return ensure_program(
        ("chromium", "chromium-browser", "/usr/bin/chromium"),
        ("chromium",),
        "Chromium is needed for the browser test: `sudo apt-get install chromium`",
    )


def wait_for(log: list[dict[str, Any]], done: Callable[[list[dict[str, Any]]], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not done(log):
        assert time.monotonic() < deadline, f"the page never {what}: {log}"
        time.sleep(0.1)


def seen(log: list[dict[str, Any]]) -> list[int]:
    """The ids of the events the page received, in the order it received them."""
    return [e["id"] for e in sorted(log, key=lambda e: e["seq"]) if e["type"] in ("account", "change")]


def test_a_page_follows_an_account_through_the_gateway_and_resumes_after_losing_the_stream(
    running: Services, page_server: PageServer, chromium: str, unique: str
) -> None:
    owner = f"web-{unique}"
    customer = bearer(f"user-{owner}", (ACCOUNTS_READ, ACCOUNTS_WRITE), owner=owner)
    c = running.commands
    account = c.post("/accounts", json={"owner_id": owner, "currency": "EUR"}, headers=customer).json()
    account_id = account["account_id"]

    def deposit(amount: int) -> str:
        answer = c.post(f"/accounts/{account_id}/deposits", json={"amount": amount}, headers=customer)
        assert answer.status_code == 200, answer.text
        return str(answer.json()["position"])

    applied = running.queries.get(f"/accounts/{account_id}", params={"after": deposit(5), "wait_ms": 5000})
    assert applied.json()["version"] == 2  # so the page starts from version 2
    fragment = urlencode(
        {
            "gateway": f"http://127.0.0.1:{GATEWAY_PORT}",
            "account": account_id,
            "token": token(f"user-{owner}", (ACCOUNTS_READ,), owner=owner),
        }
    )
    with tempfile.TemporaryDirectory() as profile:
        browser = subprocess.Popen(
            [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", f"--user-data-dir={profile}", f"{PAGE_ORIGIN}/page.html#{fragment}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its renderers and helpers too are stopped with the group
        )  # fmt: skip
        try:
            log = page_server.log
            wait_for(log, lambda log: 2 in seen(log), "showed the account at version 2")
            read = next(e for e in log if e["type"] == "read")
            assert read["status"] == 200 and read["body"]["balance"] == 5  # a cross-origin read
            deposit(7)
            wait_for(log, lambda log: 3 in seen(log), "received the change of version 3")

            running.restart("query-api")  # every stream it served is cut
            deposit(11)
            deposit(13)
            wait_for(log, lambda log: 5 in seen(log), "resumed after the restart")
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(browser.pid, signal.SIGKILL)
            browser.wait(10)
    assert any(e["type"] == "error" for e in log), "the stream was never lost"
    assert seen(log) == [2, 3, 4, 5], "a gap or a repeat"
    changes = [e["data"] for e in sorted(log, key=lambda e: e["seq"]) if e["type"] == "change"]
    assert [(ch["amount"], ch["balance_after"]) for ch in changes] == [(7, 12), (11, 23), (13, 36)]
