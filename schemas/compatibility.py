"""Avro schema resolution rules, checked statically: can a reader schema read a writer's data?

Every new version of a schema must be readable by every earlier version and read every earlier
version (full transitive compatibility), so old events replay and old consumers keep working.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.registry import SchemaRegistry, SchemaVersion

_PROMOTIONS = {
    ("int", "long"), ("int", "float"), ("int", "double"),
    ("long", "float"), ("long", "double"), ("float", "double"),
    ("string", "bytes"), ("bytes", "string"),
}  # fmt: skip
_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


@dataclass(frozen=True)
class Incompatibility:
    path: str  # e.g. MoneyDeposited.channel
    rule: str  # short name of the Avro resolution rule that fails
    detail: str

    def __str__(self) -> str:
        return f"{self.path}: {self.rule}: {self.detail}"


@dataclass(frozen=True)
class VersionProblem:
    name: str
    reader: int
    writer: int
    direction: str  # "backward" (new reads old) or "forward" (old reads new)
    problem: Incompatibility

    def __str__(self) -> str:
        return f"{self.name} v{self.reader} cannot read v{self.writer} ({self.direction}): {self.problem}"


def _type_name(schema: Any) -> str:
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, dict):
        return str(schema["type"])
    return str(schema)


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


class _Resolver:
    """Walks a reader and a writer schema together; named types resolve within each schema."""

    def __init__(self) -> None:
        self.reader_names: dict[str, Any] = {}
        self.writer_names: dict[str, Any] = {}

    def _deref(self, schema: Any, names: dict[str, Any]) -> Any:
        if isinstance(schema, dict) and schema.get("type") in ("record", "enum", "fixed"):
            names[_short(schema["name"])] = schema
        if isinstance(schema, dict) and schema.get("type") in _PRIMITIVES:
            return schema["type"] if "logicalType" not in schema else schema
        if isinstance(schema, str) and schema not in _PRIMITIVES:
            return names.get(_short(schema), schema)
        return schema

    def check(self, reader: Any, writer: Any, path: str) -> list[Incompatibility]:
        reader = self._deref(reader, self.reader_names)
        writer = self._deref(writer, self.writer_names)
        rtype, wtype = _type_name(reader), _type_name(writer)
        if wtype == "union":
            problems = []
            for branch in writer:
                found = self._readable_branch(reader, branch, path)
                if found:
                    problems.extend(found)
            return problems
        if rtype == "union":
            return self._readable_branch(reader, writer, path)
        if rtype != wtype:
            if (wtype, rtype) in _PROMOTIONS:
                return []
            return [Incompatibility(path, "type_mismatch", f"writer type {wtype} cannot be read as {rtype}")]
        if rtype == "record":
            return self._records(reader, writer, path)
        if rtype == "enum":
            return self._enums(reader, writer, path)
        if rtype == "fixed" and reader.get("size") != writer.get("size"):
            return [Incompatibility(path, "fixed_size", f"{writer['size']} != {reader['size']}")]
        if rtype == "array":
            return self.check(reader["items"], writer["items"], f"{path}[]")
        if rtype == "map":
            return self.check(reader["values"], writer["values"], f"{path}{{}}")
        return []

    def _readable_branch(self, reader: Any, writer: Any, path: str) -> list[Incompatibility]:
        branches = reader if isinstance(reader, list) else [reader]
        for branch in branches:
            if not self.check(branch, writer, path):
                return []
        return [
            Incompatibility(
                path,
                "union_branch_missing",
                f"writer type {_type_name(self._deref(writer, self.writer_names))} "
                f"matches no branch of the reader's {_type_name(reader)}",
            )
        ]

    def _records(self, reader: dict[str, Any], writer: dict[str, Any], path: str) -> list[Incompatibility]:
        names = {_short(reader["name"]), *(_short(a) for a in reader.get("aliases", []))}
        if _short(writer["name"]) not in names:
            return [
                Incompatibility(path, "name_mismatch", f"record {writer['name']} is not {reader['name']}")
            ]
        writer_fields = {f["name"]: f for f in writer["fields"]}
        problems = []
        for field in reader["fields"]:
            here = f"{path}.{field['name']}" if path else field["name"]
            source = writer_fields.get(field["name"]) or next(
                (writer_fields[a] for a in field.get("aliases", []) if a in writer_fields), None
            )
            if source is None:
                if "default" not in field:
                    problems.append(
                        Incompatibility(
                            here,
                            "missing_default",
                            "the reader has this field without a default and the writer lacks it",
                        )
                    )
                continue
            problems.extend(self.check(field["type"], source["type"], here))
        return problems

    @staticmethod
    def _enums(reader: dict[str, Any], writer: dict[str, Any], path: str) -> list[Incompatibility]:
        if "default" in reader:
            return []
        unknown = [s for s in writer["symbols"] if s not in reader["symbols"]]
        if unknown:
            return [
                Incompatibility(
                    path, "enum_symbol_missing", f"reader lacks symbols {unknown} and has no default"
                )
            ]
        return []


def can_read(reader: Any, writer: Any) -> list[Incompatibility]:
    """The problems a reader schema has with data of a writer schema (empty: compatible)."""
    name = _short(reader["name"]) if isinstance(reader, dict) and "name" in reader else ""
    return _Resolver().check(reader, writer, name)


def check_registry(registry: SchemaRegistry) -> list[VersionProblem]:
    """Full transitive compatibility of every schema's versions."""
    problems = []
    for name in registry.names():
        versions = registry.versions(name)
        for i, old in enumerate(versions):
            for new in versions[i + 1 :]:
                problems += _pair(name, new, old, "backward")
                problems += _pair(name, old, new, "forward")
    return problems


def _pair(name: str, reader: SchemaVersion, writer: SchemaVersion, direction: str) -> list[VersionProblem]:
    return [
        VersionProblem(name, reader.version, writer.version, direction, p)
        for p in can_read(reader.raw, writer.raw)
    ]
