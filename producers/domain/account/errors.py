"""Account rule violations, each with its reason code (the contract lists them all)."""

from __future__ import annotations

from producers.domain.errors import DomainError


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


class CurrencyMismatch(DomainError):
    reason = "currency_mismatch"


class InvalidOwnerId(DomainError):
    reason = "invalid_owner_id"


class InvalidReference(DomainError):
    reason = "invalid_reference"
