"""compose.yaml cannot run here (no Docker engine), so check it against the code instead."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import yaml

from auth.settings import AuthSettings
from infra.services import services
from infra.settings import StackSettings, TopicSettings
from producers.settings import CommandApiSettings, ProcessorSettings
from query_api.settings import QueryApiSettings
from stream_processors.settings import ProjectorSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
SETTINGS = (
    AuthSettings,
    CommandApiSettings,
    ProcessorSettings,
    ProjectorSettings,
    QueryApiSettings,
    StackSettings,
    TopicSettings,
)
KNOWN_VARIABLES = {name.upper() for cls in SETTINGS for name in cls.model_fields}


def test_every_service_of_make_run_is_in_compose_with_the_same_entry_point() -> None:
    for service in services():
        spec = COMPOSE["services"][service.name]
        assert spec["command"] == ["python", "-m", service.module]
        for name, value in service.env.items():
            if not name.endswith("_PORT"):  # ports differ (local: one host; compose: one per container)
                assert spec["environment"][name] == value, (service.name, name)
        assert importlib.util.find_spec(service.module) is not None


def test_every_environment_variable_in_compose_is_a_setting_of_ours() -> None:
    for name, spec in COMPOSE["services"].items():
        if spec.get("image", "").startswith(("apache/kafka", "redis", "nginx")):
            continue
        unknown = set(spec.get("environment", {})) - KNOWN_VARIABLES
        assert not unknown, f"{name} sets variables no settings class reads: {unknown}"


def test_the_topic_init_service_runs_our_cli() -> None:
    assert COMPOSE["services"]["topics"]["command"] == ["cqrs", "topics", "create"]


def test_the_gateway_routes_writes_to_the_command_api_and_reads_to_the_query_api() -> None:
    nginx = (ROOT / "deploy" / "nginx.conf").read_text()
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        assert re.search(rf"^\s*{method}\s+command_api;", nginx, re.MULTILINE), method
    assert re.search(r"^\s*default\s+query_api;", nginx, re.MULTILINE)
