"""The event contract: every schema round-trips, every released version still decodes, versions
stay compatible, and the envelope is the same everywhere."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from infra.cli import app as cli
from schemas.codec import SingleObjectCodec
from schemas.compatibility import can_read, check_registry
from schemas.golden import fixture_paths, from_jsonable, sample_record
from schemas.registry import AVRO_ROOT, SchemaRegistry, default_registry

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
registry = default_registry()
codec = SingleObjectCodec(registry)
ALL_VERSIONS = [v for name in registry.names() for v in registry.versions(name)]
EVENT_ENVELOPE = [
    "event_id",
    "aggregate_type",
    "aggregate_id",
    "version",
    "event_type",
    "occurred_at",
    "command_id",
    "correlation_id",
    "causation_id",
]
COMMAND_ENVELOPE = ["command_id", "aggregate_id", "expected_version", "correlation_id", "issued_at"]
REQUIRED_EVENTS = {
    "AccountOpened",
    "MoneyDeposited",
    "MoneyWithdrawn",
    "OverdraftLimitChanged",
    "AccountClosed",
    "AccountDebited",
    "AccountCredited",
    "TransferRequested",
    "TransferCompleted",
    "TransferFailed",
}


def test_every_event_of_the_reference_domain_has_a_schema() -> None:
    assert set(registry.names()) >= REQUIRED_EVENTS


@pytest.mark.parametrize("name", registry.names())
def test_round_trip_with_the_current_version(name: str) -> None:
    schema = registry.latest(name)
    record = sample_record(schema.raw)
    decoded = codec.decode(codec.encode(name, record))
    assert (decoded.name, decoded.writer_version, decoded.record) == (name, schema.version, record)


LEGACY = sorted((GOLDEN / "legacy").glob("*.bin"))


@pytest.mark.parametrize("schema", ALL_VERSIONS, ids=lambda v: f"{v.name}.v{v.version}")
def test_golden_fixture_of_every_released_version_decodes_into_the_current_shape(schema) -> None:  # type: ignore[no-untyped-def]
    """`tests/golden` holds spec-order frames (what Java's BinaryMessageEncoder writes; the Java
    contract client checks them byte for byte)."""
    binary, expected = fixture_paths(GOLDEN, schema)
    assert binary.exists(), (
        f"no golden fixture for {schema.name} v{schema.version}: run `cqrs schemas golden`"
    )
    assert_decodes(binary, expected, legacy=False)


@pytest.mark.parametrize("binary", LEGACY, ids=lambda p: p.stem)
def test_frames_of_releases_before_the_fingerprint_fix_still_decode(binary: Path) -> None:
    """`tests/golden/legacy` holds the frames earlier releases wrote, fingerprint reversed (one per
    version released then; versions released since have none)."""
    assert_decodes(binary, binary.with_suffix(".json"), legacy=True)


def test_every_version_released_before_the_fix_has_a_legacy_fixture() -> None:
    assert len(LEGACY) == 26  # the versions of the release before the fix


def assert_decodes(binary: Path, expected: Path, *, legacy: bool) -> None:
    written = from_jsonable(json.loads(expected.read_text()))
    fresh = SingleObjectCodec(registry)
    decoded = fresh.decode(binary.read_bytes())
    assert fresh.legacy_frames == int(legacy)
    name, version = binary.stem.split(".v")
    assert (decoded.name, decoded.writer_version) == (name, int(version))
    current = registry.latest(name).raw
    for field in current["fields"]:
        if field["name"] in written:
            assert decoded.record[field["name"]] == written[field["name"]], field["name"]
        else:  # added after this version: the reader's default fills it
            assert decoded.record[field["name"]] == field["default"], field["name"]


def test_frames_carry_the_fingerprint_as_java_writes_it() -> None:
    """Known answer from Apache Avro 1.12's Java BinaryMessageEncoder for OpenAccount v1."""
    open_account = registry.versions("OpenAccount")[0]
    frame = codec.encode_as(open_account, sample_record(open_account.raw))
    assert frame[:10].hex(" ") == "c3 01 83 ea 33 41 97 dc b8 f4"
    assert open_account.fingerprint_hex == "83ea334197dcb8f4"


def test_an_old_money_deposited_reads_with_the_new_channel_default() -> None:
    v1 = registry.versions("MoneyDeposited")[0]
    record = sample_record(v1.raw)
    decoded = codec.decode(codec.encode_as(v1, record))
    assert decoded.record["channel"] == "unspecified"
    assert decoded.record["amount"] == record["amount"]


@pytest.mark.parametrize("schema", ALL_VERSIONS, ids=lambda v: f"{v.name}.v{v.version}")
def test_the_envelope_is_the_same_in_every_event_and_command(schema) -> None:  # type: ignore[no-untyped-def]
    names = [f["name"] for f in schema.raw["fields"]]
    if ".events." in schema.full_name:
        assert names[: len(EVENT_ENVELOPE)] == EVENT_ENVELOPE
    elif ".commands." in schema.full_name:
        assert names[: len(COMMAND_ENVELOPE)] == COMMAND_ENVELOPE


def test_the_repository_schemas_are_fully_compatible() -> None:
    assert check_registry(registry) == []
    result = CliRunner().invoke(cli, ["schemas", "check"])
    assert result.exit_code == 0, result.output


def _copy_with_new_version(tmp_path: Path, name: str, change) -> Path:  # type: ignore[no-untyped-def]
    root = tmp_path / "avro"
    shutil.copytree(AVRO_ROOT, root)
    latest = registry.latest(name)
    raw = json.loads(latest.path.read_text())
    change(raw)
    target = root / latest.path.relative_to(AVRO_ROOT).parent / f"{name}.v{latest.version + 1}.avsc"
    target.write_text(json.dumps(raw))
    return root


def test_a_new_field_without_default_breaks_backward_compatibility(tmp_path: Path) -> None:
    root = _copy_with_new_version(
        tmp_path, "MoneyWithdrawn", lambda raw: raw["fields"].append({"name": "teller", "type": "string"})
    )
    problems = check_registry(SchemaRegistry(root))
    # (once per earlier version it is checked against: the check is transitive)
    assert {(p.direction, p.problem.path, p.problem.rule) for p in problems} == {
        ("backward", "MoneyWithdrawn.teller", "missing_default")
    }
    result = CliRunner().invoke(cli, ["schemas", "check", "--root", str(root)])
    assert result.exit_code == 1
    assert "MoneyWithdrawn.teller" in result.output and "missing_default" in result.output


def test_removing_a_field_without_default_breaks_forward_compatibility(tmp_path: Path) -> None:
    def drop_amount(raw):  # type: ignore[no-untyped-def]
        raw["fields"] = [f for f in raw["fields"] if f["name"] != "amount"]

    problems = check_registry(SchemaRegistry(_copy_with_new_version(tmp_path, "MoneyWithdrawn", drop_amount)))
    assert {(p.direction, p.problem.path, p.problem.rule) for p in problems} == {
        ("forward", "MoneyWithdrawn.amount", "missing_default")
    }


def test_narrowing_a_type_is_reported_with_the_field_and_rule(tmp_path: Path) -> None:
    def to_int(raw):  # type: ignore[no-untyped-def]
        for f in raw["fields"]:
            if f["name"] == "amount":
                f["type"] = "int"

    problems = check_registry(SchemaRegistry(_copy_with_new_version(tmp_path, "MoneyWithdrawn", to_int)))
    # The old version (long) reads the new data (int) by promotion; the new reader cannot
    # narrow old longs to int.
    assert {(p.direction, p.problem.path, p.problem.rule) for p in problems} == {
        ("backward", "MoneyWithdrawn.amount", "type_mismatch")
    }


@pytest.mark.parametrize(
    ("reader", "writer", "rule"),
    [
        (
            {"type": "enum", "name": "E", "symbols": ["A"]},
            {"type": "enum", "name": "E", "symbols": ["A", "B"]},
            "enum_symbol_missing",
        ),
        (["null", "string"], ["null", "long"], "union_branch_missing"),
        (
            {"type": "record", "name": "X", "fields": []},
            {"type": "record", "name": "Y", "fields": []},
            "name_mismatch",
        ),
        ({"type": "array", "items": "int"}, {"type": "array", "items": "string"}, "type_mismatch"),
    ],
)
def test_resolution_rules(reader: object, writer: object, rule: str) -> None:
    assert [p.rule for p in can_read(reader, writer)] == [rule]


def test_allowed_changes_pass() -> None:
    assert can_read("long", "int") == []
    assert can_read(["null", "string"], "string") == []
    assert (
        can_read(
            {"type": "enum", "name": "E", "symbols": ["A"], "default": "A"},
            {"type": "enum", "name": "E", "symbols": ["A", "B"]},
        )
        == []
    )
