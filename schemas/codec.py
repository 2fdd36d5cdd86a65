"""Avro single-object encoding (0xC3 0x01, CRC-64-AVRO fingerprint little-endian, body), byte for
byte what Apache Avro's Java `BinaryMessageEncoder` writes, with typed decode errors.

Releases before the contract fix wrote the fingerprint's bytes reversed. Logs keep those frames
forever, so the decoder still reads them: when the 8 bytes name no known schema but their reverse
does, the frame is a legacy one (counted in `legacy_frames`)."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from fastavro import schemaless_reader, schemaless_writer

from schemas.compiled import Decoder, Encoder, compile_decoder, compile_encoder
from schemas.registry import SchemaRegistry, SchemaVersion, UnknownSchema, default_registry, fingerprint_hex

MAGIC = b"\xc3\x01"
HEADER_SIZE = len(MAGIC) + 8


class CodecError(Exception):
    """Base of every error the codec raises."""


class EncodeError(CodecError):
    """The record does not fit the schema it was written with."""


class DecodeError(CodecError):
    """Bytes that cannot be turned into a record; says what it saw."""


class WrongMagic(DecodeError):
    """The bytes do not start with the single-object marker 0xC3 0x01."""


class UnknownFingerprint(DecodeError):
    """The writer schema's fingerprint matches no released schema."""


class CorruptBody(DecodeError):
    """The header is fine but the body is truncated, too long or invalid for its schema."""


@dataclass(frozen=True)
class Decoded:
    """A record resolved into the current (reader) version of its schema."""

    name: str  # record name, e.g. MoneyDeposited
    writer_version: int
    record: dict[str, Any]


class Codec(Protocol):
    """The serialization boundary: another framing (e.g. Confluent's) implements the same."""

    def encode(self, name: str, record: dict[str, Any]) -> bytes: ...

    def decode(self, data: bytes) -> Decoded: ...


# Called with a fingerprint no known schema has: looks further (the schemas topic) and returns
# whether the registry learned new versions.
SchemaLookup = Callable[[int], bool]


class SingleObjectCodec:
    """Writes with the newest released version of a schema; reads any known version into it.

    The common case runs compiled code (schemas/compiled.py): writing with the newest version, and
    reading a frame written with the version it is read into. Everything else, and whatever the
    compiled code declines, goes through fastavro."""

    def __init__(self, registry: SchemaRegistry | None = None, lookup: SchemaLookup | None = None) -> None:
        self.registry = registry or default_registry()
        self.lookup = lookup
        self.legacy_frames = 0  # frames read with the pre-fix (reversed) fingerprint order
        self._encoders: dict[int, tuple[bytes, Encoder | None]] = {}  # fingerprint -> header, encoder
        self._decoders: dict[int, Decoder | None] = {}  # fingerprint -> decoder of that very version

    def encode(self, name: str, record: dict[str, Any]) -> bytes:
        try:
            schema = self.registry.latest(name)
        except UnknownSchema as exc:
            raise EncodeError(str(exc)) from None
        compiled = self._encoders.get(schema.fingerprint)
        if compiled is None:
            header = MAGIC + schema.fingerprint.to_bytes(8, "little")
            compiled = self._encoders[schema.fingerprint] = (header, compile_encoder(schema.raw))
        header, encoder = compiled
        if encoder is not None and (body := encoder(record)) is not None:
            return header + body
        return self.encode_as(schema, record)

    def encode_as(self, schema: SchemaVersion, record: dict[str, Any]) -> bytes:
        """Write with one given (possibly older) version, e.g. for golden fixtures."""
        name = schema.name
        buf = io.BytesIO()
        buf.write(MAGIC)
        buf.write(schema.fingerprint.to_bytes(8, "little"))
        try:
            schemaless_writer(buf, schema.parsed, record)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            raise EncodeError(f"{name}: record does not fit schema v{schema.version}: {exc!r}") from exc
        return buf.getvalue()

    def decode(self, data: bytes) -> Decoded:
        if len(data) < HEADER_SIZE:
            raise WrongMagic(f"{len(data)} bytes is shorter than the {HEADER_SIZE}-byte header")
        if data[:2] != MAGIC:
            raise WrongMagic(f"expected marker c301, saw {data[:2].hex()}")
        writer = self._writer(data)
        reader = self.registry.latest(writer.name)
        if writer is reader:
            if writer.fingerprint in self._decoders:
                decoder = self._decoders[writer.fingerprint]
            else:
                decoder = self._decoders[writer.fingerprint] = compile_decoder(writer.raw)
            if decoder is not None and (fast := decoder(data, HEADER_SIZE)) is not None:
                return Decoded(name=writer.name, writer_version=writer.version, record=fast)
        body = io.BytesIO(data)
        body.seek(HEADER_SIZE)
        try:
            record = schemaless_reader(body, writer.parsed, reader.parsed)
        except Exception as exc:  # fastavro raises many types on bad input; all mean "corrupt"
            raise CorruptBody(f"{writer.name} v{writer.version}: body does not decode: {exc!r}") from exc
        if body.tell() != len(data):
            raise CorruptBody(f"{writer.name} v{writer.version}: {len(data) - body.tell()} trailing bytes")
        if not isinstance(record, dict):
            raise CorruptBody(f"{writer.name}: decoded to {type(record).__name__}, not a record")
        return Decoded(name=writer.name, writer_version=writer.version, record=record)

    def _writer(self, data: bytes) -> SchemaVersion:
        spec = int.from_bytes(data[2:HEADER_SIZE], "little")
        for attempt in range(2):
            found = self.registry.find(spec)
            if found is not None:
                return found
            legacy = self.registry.find(int.from_bytes(data[2:HEADER_SIZE], "big"))
            if legacy is not None:
                self.legacy_frames += 1
                return legacy
            if attempt == 0 and not (self.lookup is not None and self.lookup(spec)):
                break
        raise UnknownFingerprint(f"no known schema has fingerprint {fingerprint_hex(spec)}")
