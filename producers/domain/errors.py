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


class AccountClosed(DomainError):
    reason = "account_closed"


class InvalidAmount(DomainError):
    reason = "invalid_amount"


class InvalidCurrency(DomainError):
    reason = "invalid_currency"


class InvalidOverdraftLimit(DomainError):
    reason = "invalid_overdraft_limit"


class InsufficientFunds(DomainError):
    reason = "insufficient_funds"


class BalanceNotZero(DomainError):
    reason = "balance_not_zero"


class BalanceLimitExceeded(DomainError):
    reason = "balance_limit_exceeded"
