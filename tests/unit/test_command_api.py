"""The command API's HTTP edge with a fake command bus: validation, outcome mapping, headers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from producers.api.app import create_app
from producers.api.gateway import OutcomeTimeout
from producers.engine.handler import CommandEnvelope, Outcome
from producers.settings import CommandApiSettings
from tests.support.tokens import bearer


class FakeBus:
    def __init__(self) -> None:
        self.submitted: list[tuple[CommandEnvelope, Any]] = []
        self.calls: list[tuple[str, CommandEnvelope, Any]] = []
        self.outcome: Outcome | Exception | None = None

    def start(self) -> None: ...

    def close(self) -> None: ...

    async def submit(self, aggregate: str, envelope: CommandEnvelope, command: Any) -> Outcome:
        self.submitted.append((envelope, command))
        self.calls.append((aggregate, envelope, command))
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome or Outcome(True, 1, "0-5", None, None, None)


@pytest.fixture
def bus() -> FakeBus:
    return FakeBus()


@pytest.fixture
def client(bus: FakeBus) -> Iterator[TestClient]:
    with TestClient(create_app(CommandApiSettings(), gateway=bus), headers=bearer()) as c:
        yield c


def test_open_account_answers_201_with_id_version_and_position(client: TestClient, bus: FakeBus) -> None:
    response = client.post("/accounts", json={"owner_id": "alice", "currency": "EUR"})
    assert response.status_code == 201
    body = response.json()
    assert body["version"] == 1 and body["position"] == "0-5"
    assert response.headers["X-Position"] == "0-5"
    envelope, _ = bus.submitted[0]
    assert body["account_id"] == envelope.aggregate_id


def test_the_same_idempotency_key_gives_the_same_ids(client: TestClient, bus: FakeBus) -> None:
    for _ in range(2):
        client.post(
            "/accounts", json={"owner_id": "a", "currency": "EUR"}, headers={"Idempotency-Key": "k-1"}
        )
    (first, _), (second, _) = bus.submitted
    assert (first.command_id, first.aggregate_id) == (second.command_id, second.aggregate_id)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"currency": "EUR"}, "owner_id"),
        ({"owner_id": "a", "currency": "euro"}, "currency"),
        ({"owner_id": "a", "currency": "EUR", "overdraft_limit": -1}, "overdraft_limit"),
        ({"owner_id": "a", "currency": "EUR", "surprise": 1}, "surprise"),
    ],
)
def test_bad_open_bodies_get_422_naming_the_field(
    client: TestClient, body: dict[str, object], field: str
) -> None:
    response = client.post("/accounts", json=body)
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"
    assert field in [f["field"] for f in response.json()["fields"]]


@pytest.mark.parametrize("amount", [0, -5, "12", 1.5, True, 10**16, None])
def test_bad_amounts_get_422(client: TestClient, amount: object) -> None:
    response = client.post("/accounts/acc-1/deposits", json={"amount": amount})
    assert response.status_code == 422
    assert response.json()["fields"][0]["field"] == "amount"


def test_malformed_json_gets_422_not_500(client: TestClient) -> None:
    response = client.post(
        "/accounts", content=b'{"owner_id": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["fields"][0]["field"] == "body"


@pytest.mark.parametrize(
    ("reason", "status"),
    [("account_not_found", 404), ("version_mismatch", 412), ("account_exists", 409)],
)
def test_rejections_map_to_http(client: TestClient, bus: FakeBus, reason: str, status: int) -> None:
    bus.outcome = Outcome(False, 3, None, reason, "because", None)
    response = client.post("/accounts/acc-1/deposits", json={"amount": 5})
    assert response.status_code == status
    assert response.json()["error"] == reason


def test_an_unknown_outcome_is_504_with_the_command_id(client: TestClient, bus: FakeBus) -> None:
    bus.outcome = OutcomeTimeout("cmd-9")
    response = client.post("/accounts/acc-1/deposits", json={"amount": 5})
    assert response.status_code == 504
    assert response.json()["command_id"] == "cmd-9"
