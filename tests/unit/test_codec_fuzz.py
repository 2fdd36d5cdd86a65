"""Random and mutated bytes give only the codec's typed errors, never anything else."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.codec import MAGIC, DecodeError, SingleObjectCodec
from schemas.golden import sample_record
from schemas.registry import default_registry

registry = default_registry()
codec = SingleObjectCodec(registry)
VALID = [codec.encode(name, sample_record(registry.latest(name).raw)) for name in registry.names()]
FINGERPRINTS = [v.fingerprint.to_bytes(8, "little") for n in registry.names() for v in registry.versions(n)]


def decodes_or_fails_typed(data: bytes) -> None:
    try:
        codec.decode(data)
    except DecodeError as exc:
        assert str(exc)  # says what it saw


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    decodes_or_fails_typed(data)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(FINGERPRINTS), st.binary(max_size=200))
def test_a_valid_header_with_a_random_body(fingerprint: bytes, body: bytes) -> None:
    decodes_or_fails_typed(MAGIC + fingerprint + body)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(VALID),
    st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), min_size=1, max_size=4),
    st.integers(min_value=0, max_value=400),
)
def test_mutated_and_truncated_valid_messages(valid: bytes, flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(valid)
    for position, value in flips:
        data[position % len(data)] = value
    decodes_or_fails_typed(bytes(data[: max(cut, 1)]))
