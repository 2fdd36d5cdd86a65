"""Hostile input at the command API's edge, with a fake bus: every answer is a documented status
with an {error, detail} body, never a 500 nor FastAPI's own {"detail": ...}."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from producers.api.app import create_app
from producers.settings import CommandApiSettings
from tests.support.tokens import bearer
from tests.unit.test_command_api import FakeBus

JSON = {"content-type": "application/json"}
LIMIT = 1024


@pytest.fixture
def bus() -> FakeBus:
    return FakeBus()


@pytest.fixture
def client(bus: FakeBus) -> Iterator[TestClient]:
    settings = CommandApiSettings(command_api_max_body_bytes=LIMIT)
    with TestClient(create_app(settings, gateway=bus), headers=bearer(), raise_server_exceptions=False) as c:
        yield c


def error_of(response: object, status: int) -> str:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert isinstance(body["error"], str) and isinstance(body["detail"], str), body
    return str(body["error"])


@pytest.mark.parametrize(
    "if_match",
    [b'"9223372036854775808"', b'"' + b"9" * 30 + b'"', b'"\xb2"', b"\xb2", b'"-1"', b'"3', b"*x"],
)
def test_an_if_match_that_is_no_version_is_422_never_500(
    client: TestClient, bus: FakeBus, if_match: bytes
) -> None:
    response = client.post("/accounts/acc-1/deposits", json={"amount": 5}, headers={"If-Match": if_match})  # type: ignore[dict-item]
    assert error_of(response, 422) == "validation_error"
    assert response.json()["fields"][0]["field"] == "If-Match"
    assert bus.submitted == []


def test_the_largest_version_passes_as_expected_version(client: TestClient, bus: FakeBus) -> None:
    client.post(
        "/accounts/acc-1/deposits", json={"amount": 5}, headers={"If-Match": 'W/"9223372036854775807"'}
    )
    assert bus.submitted[0][0].expected_version == 2**63 - 1


@pytest.mark.parametrize(
    "body",
    [
        b'{"amount": "\xff"}',  # not UTF-8
        b"[" * 400 + b"]" * 400,  # nested deeper than the parser goes (within the size limit)
        b'{"amount": ' + b"9" * 900 + b"}",  # passes no integer conversion limit... still 422
    ],
)
def test_a_body_that_is_not_json_is_422_naming_the_body(client: TestClient, body: bytes) -> None:
    response = client.post("/accounts/acc-1/deposits", content=body, headers=JSON)
    assert error_of(response, 422) == "validation_error"


def test_a_5000_digit_integer_is_422_not_400() -> None:
    with TestClient(create_app(CommandApiSettings(), gateway=FakeBus()), headers=bearer()) as c:
        response = c.post(
            "/accounts/acc-1/deposits", content=b'{"amount": ' + b"9" * 5000 + b"}", headers=JSON
        )
        assert error_of(response, 422) == "validation_error"
        deep = c.post("/accounts/acc-1/deposits", content=b"[" * 30_000 + b"]" * 30_000, headers=JSON)
        assert error_of(deep, 422) == "validation_error"


def test_unknown_routes_and_methods_are_json(client: TestClient) -> None:
    assert error_of(client.get("/nowhere"), 404) == "not_found"
    response = client.get("/accounts")
    assert error_of(response, 405) == "method_not_allowed"
    assert response.headers["allow"] == "POST"


def test_a_body_over_the_limit_is_413_by_its_content_length(client: TestClient, bus: FakeBus) -> None:
    body = b'{"owner_id": "' + b"a" * LIMIT + b'", "currency": "EUR"}'
    assert error_of(client.post("/accounts", content=body, headers=JSON), 413) == "payload_too_large"
    assert bus.submitted == []


def test_a_chunked_body_over_the_limit_is_413_while_it_is_read(client: TestClient, bus: FakeBus) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"owner_id": "'
        for _ in range(10):
            yield b"a" * 200
        yield b'", "currency": "EUR"}'

    response = client.post("/accounts", content=chunks(), headers=JSON)
    assert error_of(response, 413) == "payload_too_large"
    assert bus.submitted == []


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "", "application/xml"]
)
def test_a_body_that_is_not_declared_json_is_415(client: TestClient, content_type: str) -> None:
    response = client.post(
        "/accounts", content=b'{"owner_id": "a", "currency": "EUR"}', headers={"content-type": content_type}
    )
    assert error_of(response, 415) == "unsupported_media_type"


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "application/merge-patch+json"])
def test_json_content_types_are_accepted(client: TestClient, content_type: str) -> None:
    response = client.post(
        "/accounts", content=b'{"owner_id": "a", "currency": "EUR"}', headers={"content-type": content_type}
    )
    assert response.status_code == 201


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"owner_id": "a\x00b", "currency": "EUR"}, "owner_id"),
        ({"owner_id": "a\x1bb", "currency": "EUR"}, "owner_id"),
        ({"owner_id": "a\u202eb", "currency": "EUR"}, "owner_id"),
        ({"owner_id": "   ", "currency": "EUR"}, "owner_id"),
        ({"owner_id": "a/b", "currency": "EUR"}, "owner_id"),
        ({"owner_id": "a", "currency": "ZZZ"}, "currency"),
    ],
)
def test_owner_ids_and_currencies_outside_the_domain_rules_are_422(
    client: TestClient, body: dict[str, str], field: str
) -> None:
    response = client.post("/accounts", json=body)
    assert error_of(response, 422) == "validation_error"
    assert [f["field"] for f in response.json()["fields"]] == [field]


@pytest.mark.parametrize("reference", ["a\x00", "rent\u202e", " x", "", "\u200b", "x" * 201, "a\nb"])
def test_unprintable_references_are_422(client: TestClient, reference: str) -> None:
    response = client.post("/accounts/acc-1/withdrawals", json={"amount": 5, "reference": reference})
    assert error_of(response, 422) == "validation_error"
    assert response.json()["fields"][0]["field"] == "reference"


def test_the_openapi_document_lists_the_edge_answers(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for method, operation in [("post", paths["/accounts"]), ("post", paths["/transfers"])]:
        assert {"413", "415", "422"} <= set(operation[method]["responses"])
    assert "413" in paths["/accounts/{account_id}"]["delete"]["responses"]


def test_headers_over_the_limit_are_431(client: TestClient) -> None:
    response = client.get("/healthz", headers={"x-big": "a" * 20_000})
    assert error_of(response, 431) == "request_header_fields_too_large"
