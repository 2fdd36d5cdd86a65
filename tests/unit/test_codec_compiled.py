"""The compiled encoders and decoders (schemas/compiled.py) agree with fastavro byte for byte on
every schema version, and decline (None) whatever they are not sure of."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastavro import schemaless_reader, schemaless_writer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.codec import HEADER_SIZE, SingleObjectCodec
from schemas.compiled import _kind, compile_decoder, compile_encoder
from schemas.golden import sample_record
from schemas.registry import SchemaVersion, default_registry

registry = default_registry()
codec = SingleObjectCodec(registry)
ALL = [v for name in registry.names() for v in registry.versions(name)]
LONGS = st.integers(-(2**63), 2**63 - 1)
TEXT = st.text(max_size=80)
INSTANTS = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)


def fastavro_body(schema: SchemaVersion, record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    schemaless_writer(buf, schema.parsed, record)
    return buf.getvalue()


def fastavro_record(schema: SchemaVersion, body: bytes) -> Any:
    return schemaless_reader(io.BytesIO(body), schema.parsed, None)


def value_of(field_type: Any) -> st.SearchStrategy[Any]:
    kind = _kind(field_type)
    assert kind is not None
    base, nullable, symbols = kind
    strategy: st.SearchStrategy[Any] = {
        "string": TEXT,
        "long": LONGS,
        "int": st.integers(-(2**31), 2**31 - 1),
        "boolean": st.booleans(),
        "timestamp": st.one_of(INSTANTS, st.integers(-(2**40), 2**40)),
        "enum": st.sampled_from(symbols or ("x",)),
    }[base]
    return st.one_of(st.none(), strategy) if nullable else strategy


def records(schema: SchemaVersion) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({f["name"]: value_of(f["type"]) for f in schema.raw["fields"]})


@pytest.mark.parametrize("schema", ALL, ids=lambda s: f"{s.name}.v{s.version}")
def test_every_contract_schema_compiles(schema: SchemaVersion) -> None:
    assert compile_encoder(schema.raw) is not None
    assert compile_decoder(schema.raw) is not None


@pytest.mark.parametrize("schema", ALL, ids=lambda s: f"{s.name}.v{s.version}")
@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_same_bytes_and_records_as_fastavro(schema: SchemaVersion, data: st.DataObject) -> None:
    record = data.draw(records(schema))
    encoder, decoder = compile_encoder(schema.raw), compile_decoder(schema.raw)
    assert encoder is not None and decoder is not None
    body = encoder(record)
    assert body == fastavro_body(schema, record)
    assert decoder(b"x" * HEADER_SIZE + body, HEADER_SIZE) == fastavro_record(schema, body)


def test_the_codec_frames_the_same_bytes_as_before() -> None:
    for name in registry.names():
        schema = registry.latest(name)
        record = sample_record(schema.raw)
        assert codec.encode(name, record) == codec.encode_as(schema, record)
        assert codec.decode(codec.encode(name, record)).record == fastavro_record(
            schema, codec.encode_as(schema, record)[HEADER_SIZE:]
        )


def test_values_it_is_not_sure_of_are_left_to_fastavro() -> None:
    schema = registry.latest("MoneyDeposited")
    encoder = compile_encoder(schema.raw)
    assert encoder is not None
    good = sample_record(schema.raw)
    for change in (
        {"amount": True},  # a bool where a long goes
        {"amount": 2**63},  # out of range
        {"amount": 1.0},
        {"occurred_at": datetime(2024, 1, 1)},  # naive: fastavro takes it as local time
        {"reference": b"bytes"},
        {"aggregate_id": "\ud800"},  # not encodable as UTF-8
    ):
        assert encoder({**good, **change}) is None, change
    missing = dict(good)
    del missing["amount"]
    assert encoder(missing) is None
    without_defaulted = {k: v for k, v in good.items() if k not in ("channel", "reference")}
    assert encoder(without_defaulted) == fastavro_body(schema, without_defaulted)


def test_a_datetime_keeps_fastavros_millisecond_truncation() -> None:
    schema = registry.latest("MoneyDeposited")
    encoder = compile_encoder(schema.raw)
    assert encoder is not None
    for instant in (
        datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(2026, 1, 1, 0, 0, 0, 1999, tzinfo=UTC),
        datetime(2026, 1, 1, tzinfo=UTC) - timedelta(microseconds=1),
    ):
        record = {**sample_record(schema.raw), "occurred_at": instant}
        assert encoder(record) == fastavro_body(schema, record)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(ALL), st.binary(max_size=200))
def test_a_body_it_decodes_reads_the_same_in_fastavro(schema: SchemaVersion, body: bytes) -> None:
    decoder = compile_decoder(schema.raw)
    assert decoder is not None
    record = decoder(b"x" * HEADER_SIZE + body, HEADER_SIZE)
    if record is not None:
        buf = io.BytesIO(body)
        assert schemaless_reader(buf, schema.parsed, None) == record
        assert buf.tell() == len(body)
