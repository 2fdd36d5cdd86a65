from __future__ import annotations

import pytest

from schemas.keys import event_key, murmur2, partition_for


# Vectors from Apache Kafka's own UtilsTest.testMurmur2 (clients/src/test/.../UtilsTest.java).
@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ],
)
def test_murmur2_matches_kafka_vectors(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected


def test_partition_is_positive_murmur2_of_the_aggregate_id_modulo_partitions() -> None:
    assert partition_for("21", 12) == (-973932308 & 0x7FFFFFFF) % 12
    assert all(0 <= partition_for(f"acc-{i}", 7) < 7 for i in range(500))


def test_event_key_pads_the_version_to_ten_digits() -> None:
    assert event_key("acc-7f3a", 42) == "acc-7f3a:0000000042"


@pytest.mark.parametrize("version", [0, -1, 10**10])
def test_event_key_rejects_versions_out_of_range(version: int) -> None:
    with pytest.raises(ValueError):
        event_key("a", version)
