"""Another system, following only schemas/README.md, sends a command and reads what it caused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import Stack
from tests.e2e.conftest import Services
from tests.support.principals import kafka_env

pytestmark = pytest.mark.e2e
HERE = Path(__file__).parent
SCHEMAS = HERE.parents[1] / "schemas" / "avro"


def test_a_plain_fastavro_and_confluent_kafka_program_speaks_the_contract(
    stack: Stack, running: Services
) -> None:
    source = (HERE / "foreign_system.py").read_text()
    for ours in ("schemas", "producers", "stream_processors", "query_api", "infra"):
        assert f"from {ours}" not in source and f"import {ours}" not in source
    run = subprocess.run(
        [sys.executable, str(HERE / "foreign_system.py"), stack.kafka_bootstrap_servers, str(SCHEMAS)],
        env={**os.environ, **kafka_env("other-system")},  # another team's principal, not the operator
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    result, event = seen["result"], seen["event"]
    assert result["status"] == "ACCEPTED" and result["version"] == 1
    assert event["event_type"] == "AccountOpened"
    assert (event["aggregate_id"], event["version"]) == (result["aggregate_id"], 1)
    assert (event["owner_id"], event["currency"]) == ("other-team", "CHF")
    assert event["command_id"] == result["command_id"]
    assert event["actor"] == "other-team-sync"  # the command's actor header, recorded in its event
    # The command went where the murmur2 partitioner put it; the event sits on the same partition.
    assert result["position"] == f"{seen['command_partition']}-{seen['event_offset']}"

    queries = running.queries
    view = queries.get(f"/accounts/{result['aggregate_id']}")
    for _ in range(600):  # the projector may still be catching up with older events
        if view.status_code == 200:
            break
        time.sleep(0.05)
        view = queries.get(f"/accounts/{result['aggregate_id']}")
    assert view.status_code == 200 and view.json()["currency"] == "CHF"
