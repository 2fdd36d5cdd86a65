"""The Redis operations a projection may emit; keys are relative to a view generation."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HashSet:
    key: str
    fields: dict[str, str | int]


@dataclass(frozen=True)
class HashIncrement:
    key: str
    field: str
    amount: int


Op = HashSet | HashIncrement
