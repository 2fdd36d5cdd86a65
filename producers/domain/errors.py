"""Domain rule violations, each with a machine-readable reason code."""

from __future__ import annotations


class DomainError(Exception):
    reason = "rejected"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class AccountNotFound(DomainError):
    reason = "account_not_found"


class AccountAlreadyExists(DomainError):
    reason = "account_exists"


class InvalidAmount(DomainError):
    reason = "invalid_amount"


class InvalidCurrency(DomainError):
    reason = "invalid_currency"


class InvalidOverdraftLimit(DomainError):
    reason = "invalid_overdraft_limit"
