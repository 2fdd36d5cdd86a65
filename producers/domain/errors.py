"""The base of every domain rule violation: a machine-readable reason code and a sentence."""

from __future__ import annotations


class DomainError(Exception):
    reason = "rejected"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail
