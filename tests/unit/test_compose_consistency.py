"""compose.yaml cannot run here (no Docker engine), so check it against the code instead."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import yaml

from auth.settings import AuthSettings
from infra.gateway import render
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
    nginx = (ROOT / "deploy" / "gateway.conf").read_text()
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        assert re.search(rf"^\s*{method}\s+command_api;", nginx, re.MULTILINE), method
    for method in ("GET", "HEAD", "OPTIONS"):
        assert re.search(rf"^\s*{method}\s+query_api;", nginx, re.MULTILINE), method
    assert re.search(r"^\s*default\s+query_api;", nginx, re.MULTILINE)


def test_compose_and_make_run_share_one_gateway_configuration() -> None:
    """compose's nginx.conf includes deploy/gateway.conf (mounted next to it); make run renders the
    same file with only its listen address changed."""
    gateway = COMPOSE["services"]["gateway"]
    assert "./deploy/gateway.conf:/etc/nginx/gateway.conf:ro" in gateway["volumes"]
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in gateway["volumes"]
    nginx = (ROOT / "deploy" / "nginx.conf").read_text()
    assert re.search(r"^\s*include /etc/nginx/gateway\.conf;", nginx, re.MULTILINE)
    for upstream in ("command_api", "query_api"):  # the names gateway.conf routes to
        assert re.search(rf"^\s*upstream {upstream}\s*{{", nginx, re.MULTILINE), upstream
    assert "listen" not in nginx and "map " not in nginx  # nothing of gateway.conf repeated
    shared = (ROOT / "deploy" / "gateway.conf").read_text()
    assert gateway["ports"] == ["8000:8000"]
    assert render(shared, 18000).replace("listen 127.0.0.1:18000;", "listen 8000;") == shared
