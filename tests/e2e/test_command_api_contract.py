"""schemathesis against the running command API's own OpenAPI document, on the real stack: no input
gives a 5xx, every status is one the document lists, and every response matches its schema."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests.e2e.conftest import COMMAND_PORT, Services
from tests.support.contract import Tally, no_server_error

pytestmark = pytest.mark.e2e

BASE_URL = f"http://127.0.0.1:{COMMAND_PORT}"
TALLY = Tally("command API")


@pytest.fixture(scope="module")
def command_api_schema(running: Services) -> Iterator[Any]:
    yield schemathesis.openapi.from_url(f"{BASE_URL}/openapi.json")
    TALLY.report()


schema = schemathesis.pytest.from_fixture("command_api_schema")

CHECKS = [
    no_server_error(TALLY, {"unavailable", "broker_unavailable"}),  # 503: Kafka is down
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.ignored_auth,
]


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,  # the same inputs on every CI run; a failure reproduces
)
def test_no_input_gives_a_server_error_or_a_response_outside_the_schema(case: Any) -> None:
    case.call_and_validate(base_url=BASE_URL, checks=CHECKS, timeout=15)


def test_chains_of_commands_built_from_the_links(command_api_schema: Any) -> None:
    """Stateful: schemathesis links operations by what one answers and the next needs (POST
    /accounts gives `account_id`, which deposits, withdrawals, PATCH and DELETE take), so the
    commands reach real accounts instead of 404s; every response is checked as above."""

    class Commands(command_api_schema.as_state_machine()):  # type: ignore[misc]
        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            case.validate_response(response, checks=CHECKS)

    Commands.run(
        settings=settings(
            max_examples=40,  # 15 found no chain once the document changed: chains need room
            stateful_step_count=6,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
        )
    )
    chained = {op for (op, status) in TALLY.seen if status in (200, 201) and "{account_id}" in op}
    assert chained, f"no command reached an account that POST /accounts opened: {sorted(TALLY.seen)}"
