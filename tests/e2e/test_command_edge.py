"""The command API's edge on the real stack: concurrent retries with one Idempotency-Key, and what
the HTTP server itself refuses (oversized headers and bodies)."""

from __future__ import annotations

import contextlib
import socket
import threading

import httpx
import pytest

from tests.e2e.conftest import COMMAND_PORT, Services
from tests.support.tokens import bearer

pytestmark = pytest.mark.e2e


def test_concurrent_requests_with_one_key_all_get_the_one_outcome(running: Services, unique: str) -> None:
    """Ten pairs of the same deposit, each pair sent at once with one key: every request is 200 with
    its pair's version and position, and each pair deposits once."""
    c = running.commands
    account = c.post("/accounts", json={"owner_id": f"pair-{unique}", "currency": "EUR"}).json()["account_id"]
    answers: dict[int, list[httpx.Response]] = {i: [] for i in range(10)}

    def deposit(pair: int, start: threading.Barrier) -> None:
        with httpx.Client(base_url=str(c.base_url), headers=bearer(), timeout=15) as client:
            start.wait()
            answers[pair].append(
                client.post(
                    f"/accounts/{account}/deposits",
                    json={"amount": 1},
                    headers={"Idempotency-Key": f"pair-{unique}-{pair}"},
                )
            )

    for pair in range(10):
        start = threading.Barrier(2)
        threads = [threading.Thread(target=deposit, args=(pair, start)) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for pair, (first, second) in answers.items():
        assert (first.status_code, second.status_code) == (200, 200), (pair, first.text, second.text)
        assert first.json() == second.json()
    versions = sorted(first.json()["version"] for first, _ in answers.values())
    assert versions == list(range(2, 12))  # one deposit per pair


def raw_request(head: bytes, body: bytes = b"") -> bytes:
    """What the server answers, read until it closes; it may close before taking all we send."""
    answer = b""
    with socket.create_connection(("127.0.0.1", COMMAND_PORT), timeout=10) as s:
        with contextlib.suppress(OSError):
            s.sendall(head + body)
        with contextlib.suppress(OSError):
            while chunk := s.recv(65536):
                answer += chunk
    return answer


def test_a_100_kb_header_is_refused_by_the_server(running: Services) -> None:
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\nConnection: close\r\n\r\n"
    answer = raw_request(head)
    assert answer.split(b"\r\n", 1)[0].split()[1] == b"431", answer[:200]
    assert b'"request_header_fields_too_large"' in answer


def test_a_20_mb_body_is_413_before_it_is_read(running: Services) -> None:
    token = bearer()["authorization"].encode()
    head = (
        b"POST /accounts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: " + token + b"\r\nContent-Length: 20000000\r\nConnection: close\r\n\r\n"
    )
    answer = raw_request(head)  # the body is never sent: the answer comes on the headers alone
    assert answer.split(b"\r\n", 1)[0].split()[1] == b"413"
    assert b'"payload_too_large"' in answer


def test_a_chunked_body_over_the_limit_is_413(running: Services) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"owner_id": "'
        for _ in range(100):
            yield b"a" * 1024
        yield b'", "currency": "EUR"}'

    response = running.commands.post(
        "/accounts", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
