"""Golden fixtures: committed bytes of one record per released schema version, decoded in CI.

`write_missing` only ever adds files for versions that have none; it never rewrites one, so a
changed released schema shows up as a failing decode instead of silently new bytes.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from schemas.codec import SingleObjectCodec
from schemas.registry import SchemaRegistry, SchemaVersion

SAMPLE_TIME = datetime(2024, 2, 29, 12, 34, 56, 789000, tzinfo=UTC)


def sample_value(schema: Any, field: str) -> Any:
    """A deterministic, non-default value of a type, so a decode that drops it is noticed."""
    if isinstance(schema, list):  # union: the first non-null branch
        branch = next((b for b in schema if b != "null"), "null")
        return sample_value(branch, field)
    if isinstance(schema, dict):
        if schema.get("logicalType") == "timestamp-millis":
            return SAMPLE_TIME
        kind = schema["type"]
        if kind == "record":
            return sample_record(schema)
        if kind == "enum":
            return schema["symbols"][-1]
        if kind == "array":
            return [sample_value(schema["items"], field)]
        if kind == "map":
            return {"k": sample_value(schema["values"], field)}
        if kind == "fixed":
            return b"\x01" * schema["size"]
        return sample_value(kind, field)
    return {
        "null": None, "boolean": True, "int": 7, "long": 1234567, "float": 1.5, "double": 2.25,
        "bytes": b"\x00\xff", "string": f"{field}-sample",
    }[schema]  # fmt: skip


def sample_record(raw: dict[str, Any]) -> dict[str, Any]:
    return {f["name"]: sample_value(f["type"], f["name"]) for f in raw["fields"]}


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"timestamp-millis": int(value.timestamp() * 1000)}
    if isinstance(value, bytes):
        return {"bytes": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def from_jsonable(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"timestamp-millis"}:
        return datetime.fromtimestamp(value["timestamp-millis"] / 1000, tz=UTC)
    if isinstance(value, dict) and set(value) == {"bytes"}:
        return base64.b64decode(value["bytes"])
    if isinstance(value, dict):
        return {k: from_jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_jsonable(v) for v in value]
    return value


def fixture_paths(folder: Path, schema: SchemaVersion) -> tuple[Path, Path]:
    stem = f"{schema.name}.v{schema.version}"
    return folder / f"{stem}.bin", folder / f"{stem}.json"


def write_missing(registry: SchemaRegistry, folder: Path) -> list[Path]:
    """Create fixtures for versions that have none. Returns the files written."""
    codec = SingleObjectCodec(registry)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in registry.names():
        for schema in registry.versions(name):
            binary, expected = fixture_paths(folder, schema)
            if binary.exists() or expected.exists():
                continue
            record = sample_record(schema.raw)
            binary.write_bytes(codec.encode_as(schema, record))
            expected.write_text(json.dumps(_jsonable(record), indent=2, sort_keys=True) + "\n")
            written += [binary, expected]
    return written
