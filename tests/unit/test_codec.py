from __future__ import annotations

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
    }
    record.update(overrides)
    return record


def test_round_trip_keeps_every_field() -> None:
    data = codec.encode("MoneyDeposited", deposited())
    assert data[:2] == MAGIC
    decoded = codec.decode(data)
    assert decoded.name == "MoneyDeposited"
    assert decoded.writer_version == 2
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
