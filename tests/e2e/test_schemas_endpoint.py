"""The log describes itself: any fingerprint in a frame can be looked up on the query API, also one
registered after the API started."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

from tests.conftest import Stack
from tests.e2e.conftest import Services
from tests.support.principals import kafka_env

pytestmark = pytest.mark.e2e
AVRO = Path(__file__).resolve().parents[2] / "schemas" / "avro"


def frame_fingerprint(raw: dict[str, object]) -> str:
    """Computed here with fastavro from the schema text alone, not with our registry."""
    return fingerprint(to_parsing_canonical_form(parse_schema(raw, _write_hint=False)), "CRC-64-AVRO")


def test_every_released_schema_is_served_by_its_fingerprint(running: Services) -> None:
    for path in sorted(AVRO.rglob("*.avsc")):
        raw = json.loads(path.read_text())
        response = running.queries.get(f"/schemas/{frame_fingerprint(raw)}")
        assert response.status_code == 200, path
        assert response.json() == raw
        assert response.headers["x-schema-version"] == path.name.split(".")[1][1:]
        assert "immutable" in response.headers["cache-control"]
    listed = running.queries.get("/schemas").json()["items"]
    assert {item["origin"] for item in listed} >= {"released"}
    assert running.queries.get("/schemas/83ea334197dcb8f4").json()["name"] == "OpenAccount"


def test_unknown_and_malformed_fingerprints(running: Services) -> None:
    missing = running.queries.get("/schemas/0000000000000001")
    assert (missing.status_code, missing.json()["error"]) == (404, "schema_not_found")
    assert running.queries.get("/schemas/xyz").status_code == 422


def test_a_schema_registered_later_is_served_without_a_restart(stack: Stack, running: Services) -> None:
    raw = json.loads((AVRO / "account" / "events" / "AccountClosed.v1.avsc").read_text())
    raw["fields"].append({"name": f"note_{uuid.uuid4().hex[:8]}", "type": "string", "default": ""})
    path = Path(f"/tmp/AccountClosed-{uuid.uuid4().hex}.avsc")
    path.write_text(json.dumps(raw))
    register = subprocess.run(
        [str(Path(sys.executable).parent / "cqrs"), "schemas", "register", str(path)],
        env={
            "KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap_servers,
            "PATH": "/usr/bin:/bin",
            **kafka_env("operator"),  # the broker asks who registers
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    path.unlink()
    assert register.returncode == 0, register.stdout + register.stderr
    assert "registered bank.account.events.AccountClosed" in register.stdout
    served = running.queries.get(f"/schemas/{frame_fingerprint(raw)}")
    assert served.status_code == 200
    assert served.json() == raw
    listed = {item["fingerprint"]: item for item in running.queries.get("/schemas").json()["items"]}
    assert listed[frame_fingerprint(raw)]["origin"] == "registered"
