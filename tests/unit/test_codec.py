from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from schemas.codec import (
    MAGIC,
    CorruptBody,
    EncodeError,
    SingleObjectCodec,
    UnknownFingerprint,
    WrongMagic,
)

codec = SingleObjectCodec()
AT = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def deposited(**overrides: object) -> dict[str, object]:
    record: dict[str, object] = {
        "event_id": "e1",
        "aggregate_type": "account",
        "aggregate_id": "acc-1",
        "version": 2,
        "event_type": "MoneyDeposited",
        "occurred_at": AT,
        "command_id": "c1",
        "correlation_id": "c1",
        "causation_id": "c1",
        "amount": 1250,
        "reference": None,
        "channel": "http",
        "actor": "alice",
        "actor_owner_id": "alice",
    }
    record.update(overrides)
    return record


def test_round_trip_keeps_every_field() -> None:
    data = codec.encode("MoneyDeposited", deposited())
    assert data[:2] == MAGIC
    decoded = codec.decode(data)
    assert decoded.name == "MoneyDeposited"
    assert decoded.writer_version == 3
    assert decoded.record == deposited()


def test_encode_rejects_a_record_that_does_not_fit() -> None:
    with pytest.raises(EncodeError):
        codec.encode("MoneyDeposited", deposited(amount="12"))
    with pytest.raises(EncodeError):
        codec.encode("NoSuchEvent", deposited())


def test_decode_errors_are_typed_and_say_what_they_saw() -> None:
    good = codec.encode("MoneyDeposited", deposited())
    with pytest.raises(WrongMagic, match="c302"):
        codec.decode(b"\xc3\x02" + good[2:])
    with pytest.raises(WrongMagic):
        codec.decode(b"\xc3")
    with pytest.raises(UnknownFingerprint):
        codec.decode(MAGIC + b"\x00" * 8 + good[10:])
    with pytest.raises(CorruptBody):
        codec.decode(good[:-3])
    with pytest.raises(CorruptBody, match="trailing"):
        codec.decode(good + b"\x00")


def test_a_frame_of_an_earlier_release_with_the_fingerprint_reversed_still_decodes() -> None:
    fresh = SingleObjectCodec()
    spec = fresh.encode("MoneyDeposited", deposited())
    legacy = spec[:2] + spec[2:10][::-1] + spec[10:]
    assert fresh.decode(legacy).record == deposited()
    assert fresh.legacy_frames == 1
    assert fresh.decode(spec).record == deposited()
    assert fresh.legacy_frames == 1


def test_an_unknown_fingerprint_is_looked_up_once_then_refused() -> None:
    asked: list[int] = []

    def lookup(fingerprint: int) -> bool:
        asked.append(fingerprint)
        return False

    fresh = SingleObjectCodec(lookup=lookup)
    with pytest.raises(UnknownFingerprint, match="0000000000000001"):
        fresh.decode(MAGIC + b"\x00" * 7 + b"\x01" + b"\x00")
    assert asked == [1 << 56]


def test_a_schema_learned_by_the_lookup_is_read_into_the_released_version() -> None:
    from schemas.registry import SchemaRegistry, schema_version

    registry = SchemaRegistry()
    released = registry.latest("MoneyDeposited")
    newer_raw = {
        **released.raw,
        "fields": [*released.raw["fields"], {"name": "memo", "type": "string", "default": ""}],
    }
    newer = schema_version(newer_raw, released.version + 1, "registered")
    writer = SingleObjectCodec(SchemaRegistry())
    writer.registry.add(newer)
    frame = writer.encode_as(newer, {**deposited(), "memo": "hello"})

    fresh = SingleObjectCodec(registry, lookup=lambda fp: registry.add(newer) or True)
    decoded = fresh.decode(frame)
    assert decoded.record == deposited()  # memo dropped: resolved into the released reader
    assert decoded.writer_version == released.version + 1
    assert registry.latest("MoneyDeposited") is released  # a registered version never becomes the reader


def test_a_rejection_reason_added_later_reads_as_other() -> None:
    from schemas.registry import SchemaRegistry, schema_version

    registry = SchemaRegistry()
    current = registry.latest("CommandResult")
    raw = json.loads(json.dumps(current.raw))
    enum = next(
        t for f in raw["fields"] if f["name"] == "reason_code" for t in f["type"] if isinstance(t, dict)
    )
    enum["symbols"].insert(0, "a_reason_from_the_future")
    future = schema_version(raw, current.version + 1, "registered")
    registry.add(future)
    record = {
        "command_id": "c", "aggregate_id": "a", "correlation_id": "c", "status": "REJECTED", "version": 1,
        "position": None, "reason": "a_reason_from_the_future", "detail": "d", "completed_at": AT,
        "request_hash": None, "reason_code": "a_reason_from_the_future",
    }  # fmt: skip
    decoded = SingleObjectCodec(registry).decode(SingleObjectCodec(registry).encode_as(future, record))
    assert decoded.record["reason_code"] == "other"
    assert decoded.record["reason"] == "a_reason_from_the_future"
