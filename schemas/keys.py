"""Key and partition rules: key `<aggregate_id>:<version:010d>`, partition = Kafka's murmur2."""

from __future__ import annotations

from functools import lru_cache

VERSION_WIDTH = 10
_M = 0x5BD1E995
_SEED = 0x9747B28C
_MASK = 0xFFFFFFFF


def event_key(aggregate_id: str, version: int) -> str:
    """Unique per event, so log compaction never erases history."""
    if version < 1 or version >= 10**VERSION_WIDTH:
        raise ValueError(f"version {version} out of range")
    return f"{aggregate_id}:{version:0{VERSION_WIDTH}d}"


def murmur2(data: bytes) -> int:
    """Kafka's `Utils.murmur2`, returned as the signed 32-bit int Java returns."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    for i in range(0, length - length % 4, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = (h * _M) & _MASK
        h ^= k
    tail = length & ~3
    extra = length % 4
    if extra == 3:
        h ^= data[tail + 2] << 16
    if extra >= 2:
        h ^= data[tail + 1] << 8
    if extra >= 1:
        h ^= data[tail]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


@lru_cache(maxsize=65536)
def partition_for(aggregate_id: str, partitions: int) -> int:
    """`toPositive(murmur2(utf8(aggregate_id))) % partitions`, as Kafka's Java client computes it."""
    if partitions < 1:
        raise ValueError("partitions must be >= 1")
    return (murmur2(aggregate_id.encode("utf-8")) & 0x7FFFFFFF) % partitions
