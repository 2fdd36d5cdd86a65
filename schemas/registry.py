"""Loads every released Avro schema version under schemas/avro and indexes it by fingerprint."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

AVRO_ROOT = Path(__file__).parent / "avro"
_FILE_NAME = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)\.v(?P<version>[1-9][0-9]*)\.avsc$")


@dataclass(frozen=True)
class SchemaVersion:
    """One released version of one record schema."""

    full_name: str  # e.g. bank.account.events.MoneyDeposited
    name: str  # e.g. MoneyDeposited
    version: int
    path: Path
    raw: Any  # the JSON as written in the file
    parsed: Any  # fastavro's parsed form
    fingerprint: int  # CRC-64-AVRO of the parsing canonical form


class UnknownSchema(LookupError):
    """No schema of that name (or fingerprint) is released."""


class SchemaRegistry:
    """All schema versions found in a folder tree of `<Name>.v<N>.avsc` files."""

    def __init__(self, root: Path = AVRO_ROOT) -> None:
        self._by_fingerprint: dict[int, SchemaVersion] = {}
        self._versions: dict[str, list[SchemaVersion]] = {}
        for path in sorted(root.rglob("*.avsc")):
            self._add(path)
        for versions in self._versions.values():
            versions.sort(key=lambda v: v.version)

    def _add(self, path: Path) -> None:
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise ValueError(f"{path}: schema files must be named <RecordName>.v<N>.avsc")
        raw = json.loads(path.read_text())
        canonical = to_parsing_canonical_form(parse_schema(raw, _write_hint=False))
        # The hinted parse lets fastavro skip re-parsing the schema on every read and write.
        parsed = parse_schema(raw)  # parse_schema leaves `raw` as it was
        if raw.get("name") != match["name"]:
            raise ValueError(f"{path}: record name {raw.get('name')!r} differs from file name")
        full_name = f"{raw['namespace']}.{raw['name']}" if raw.get("namespace") else raw["name"]
        schema = SchemaVersion(
            full_name=full_name,
            name=raw["name"],
            version=int(match["version"]),
            path=path,
            raw=raw,
            parsed=parsed,
            fingerprint=int(fingerprint(canonical, "CRC-64-AVRO"), 16),
        )
        if schema.fingerprint in self._by_fingerprint:
            other = self._by_fingerprint[schema.fingerprint]
            raise ValueError(f"{path}: same canonical schema as {other.path}")
        same_name = self._versions.setdefault(schema.name, [])
        if same_name and same_name[0].full_name != schema.full_name:
            raise ValueError(f"{path}: {schema.full_name} and {same_name[0].full_name} share a name")
        if any(v.version == schema.version for v in same_name):
            raise ValueError(f"{path}: version {schema.version} of {schema.name} exists twice")
        self._by_fingerprint[schema.fingerprint] = schema
        same_name.append(schema)

    def by_fingerprint(self, value: int) -> SchemaVersion:
        try:
            return self._by_fingerprint[value]
        except KeyError:
            raise UnknownSchema(f"no released schema has fingerprint {value:016x}") from None

    def latest(self, name: str) -> SchemaVersion:
        try:
            return self._versions[name][-1]
        except KeyError:
            raise UnknownSchema(f"no released schema is named {name!r}") from None

    def versions(self, name: str) -> list[SchemaVersion]:
        return list(self._versions.get(name, []))

    def names(self) -> list[str]:
        return sorted(self._versions)


@cache
def default_registry() -> SchemaRegistry:
    return SchemaRegistry()
