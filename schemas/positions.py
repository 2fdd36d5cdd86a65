"""The read-your-writes token: where a command's last event sits in the log (`<partition>-<offset>`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Position:
    partition: int
    offset: int

    def token(self) -> str:
        return f"{self.partition}-{self.offset}"

    @classmethod
    def parse(cls, token: str) -> Position:
        partition, sep, offset = token.partition("-")
        if not sep or not partition.isdigit() or not offset.isdigit():
            raise ValueError(f"not a position token: {token!r}")
        return cls(int(partition), int(offset))
