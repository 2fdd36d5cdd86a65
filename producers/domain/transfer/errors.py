"""Transfer rule violations, each with its reason code (the contract lists them all)."""

from __future__ import annotations

from producers.domain.errors import DomainError


class TransferExists(DomainError):
    reason = "transfer_exists"


class TransferNotFound(DomainError):
    reason = "transfer_not_found"


class TransferFinished(DomainError):
    """The command does not apply to the transfer's state (e.g. completing a failed transfer)."""

    reason = "transfer_finished"


class SameAccount(DomainError):
    reason = "same_account"


class InvalidAmount(DomainError):
    reason = "invalid_amount"
