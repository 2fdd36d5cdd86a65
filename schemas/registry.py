"""Every schema version a process can read: the released `.avsc` files under schemas/avro, plus
versions other teams registered at run time (published on the schemas topic, see schema_log.py).

Readers resolve into the newest *released* version of a record (what the code was written
against); a registered version is a writer schema only.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

AVRO_ROOT = Path(__file__).parent / "avro"
_FILE_NAME = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)\.v(?P<version>[1-9][0-9]*)\.avsc$")

Origin = Literal["released", "registered"]


def crc64_avro(raw: Any) -> int:
    """The Avro spec's CRC-64-AVRO of the schema's Parsing Canonical Form, as the value Java's
    `SchemaNormalization.parsingFingerprint64` returns (as unsigned): a frame carries it
    little-endian. (fastavro's hex string is already those little-endian bytes in order.)"""
    canonical = to_parsing_canonical_form(parse_schema(raw, _write_hint=False))
    return int.from_bytes(bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO")), "little")


def fingerprint_hex(value: int) -> str:
    """16 hex digits: the fingerprint's 8 bytes in the order a frame carries them."""
    return value.to_bytes(8, "little").hex()


def parse_fingerprint_hex(text: str) -> int:
    if len(text) != 16:
        raise ValueError(f"a fingerprint is 16 hex digits, not {text!r}")
    return int.from_bytes(bytes.fromhex(text), "little")


@dataclass(frozen=True)
class SchemaVersion:
    """One version of one record schema."""

    full_name: str  # e.g. bank.account.events.MoneyDeposited
    name: str  # e.g. MoneyDeposited
    version: int
    raw: Any  # the JSON as written
    parsed: Any  # fastavro's parsed form
    fingerprint: int  # CRC-64-AVRO, see crc64_avro
    origin: Origin = "released"
    path: Path | None = None  # the .avsc file of a released version

    @property
    def fingerprint_hex(self) -> str:
        return fingerprint_hex(self.fingerprint)

    @property
    def text(self) -> str:
        """The schema as JSON text, as published on the schemas topic and served by the query API."""
        return json.dumps(self.raw, separators=(",", ":"))


class UnknownSchema(LookupError):
    """No schema of that name (or fingerprint) is known."""


class InvalidSchema(ValueError):
    """A schema file or text that cannot be a version of this contract."""


def schema_version(raw: Any, version: int, origin: Origin, path: Path | None = None) -> SchemaVersion:
    if not isinstance(raw, dict) or raw.get("type") != "record" or not raw.get("name"):
        raise InvalidSchema("a contract schema is one Avro record with a name")
    try:
        fp = crc64_avro(raw)
        # The hinted parse lets fastavro skip re-parsing the schema on every read and write.
        parsed = parse_schema(raw)  # parse_schema leaves `raw` as it was
    except Exception as exc:  # fastavro raises several types for a bad schema
        raise InvalidSchema(f"not a valid Avro schema: {exc}") from exc
    full_name = f"{raw['namespace']}.{raw['name']}" if raw.get("namespace") else raw["name"]
    return SchemaVersion(full_name, raw["name"], version, raw, parsed, fp, origin, path)


class SchemaRegistry:
    """All known versions, by fingerprint and by record name. Safe to extend from any thread."""

    def __init__(self, root: Path | None = AVRO_ROOT) -> None:
        """`root=None`: start empty (e.g. to hold only what the schemas topic has)."""
        self._by_fingerprint: dict[int, SchemaVersion] = {}
        self._versions: dict[str, list[SchemaVersion]] = {}
        self._lock = threading.Lock()
        for path in sorted(root.rglob("*.avsc")) if root is not None else []:
            match = _FILE_NAME.match(path.name)
            if match is None:
                raise InvalidSchema(f"{path}: schema files must be named <RecordName>.v<N>.avsc")
            raw = json.loads(path.read_text())
            if raw.get("name") != match["name"]:
                raise InvalidSchema(f"{path}: record name {raw.get('name')!r} differs from file name")
            self.add(schema_version(raw, int(match["version"]), "released", path))

    def add(self, schema: SchemaVersion) -> bool:
        """Add a version; False if its fingerprint is known already. Raises on a conflict."""
        where = schema.path or f"{schema.name} v{schema.version}"
        with self._lock:
            if schema.fingerprint in self._by_fingerprint:
                return False
            if _reversed(schema.fingerprint) in self._by_fingerprint:  # would confuse legacy frames
                raise InvalidSchema(f"{where}: fingerprint is the byte-reverse of a known one")
            same_name = self._versions.get(schema.name, [])
            if same_name and same_name[0].full_name != schema.full_name:
                raise InvalidSchema(f"{where}: {schema.full_name} and {same_name[0].full_name} share a name")
            # Two teams registering at once may pick the same number; only released ones must differ.
            if schema.origin == "released" and any(
                v.version == schema.version and v.origin == "released" for v in same_name
            ):
                raise InvalidSchema(f"{where}: version {schema.version} of {schema.name} exists twice")
            self._by_fingerprint[schema.fingerprint] = schema
            # Copy-on-write, so readers never see a list being sorted.
            self._versions[schema.name] = sorted([*same_name, schema], key=lambda v: v.version)
            return True

    def find(self, value: int) -> SchemaVersion | None:
        return self._by_fingerprint.get(value)

    def by_fingerprint(self, value: int) -> SchemaVersion:
        found = self._by_fingerprint.get(value)
        if found is None:
            raise UnknownSchema(f"no known schema has fingerprint {fingerprint_hex(value)}")
        return found

    def latest(self, name: str) -> SchemaVersion:
        """The newest released version: what this code writes, and reads every version into. A
        record known only from registrations reads as itself (its newest version)."""
        versions = self._versions.get(name)
        if not versions:
            raise UnknownSchema(f"no released schema is named {name!r}")
        if versions[-1].origin == "released":  # the usual case, without a list per call
            return versions[-1]
        released = [v for v in versions if v.origin == "released"]
        return (released or versions)[-1]

    def versions(self, name: str) -> list[SchemaVersion]:
        return list(self._versions.get(name, []))

    def names(self) -> list[str]:
        return sorted(self._versions)

    def all(self) -> list[SchemaVersion]:
        return [v for name in self.names() for v in self._versions[name]]


def _reversed(value: int) -> int:
    return int.from_bytes(value.to_bytes(8, "little"), "big")


@cache
def default_registry() -> SchemaRegistry:
    return SchemaRegistry()
