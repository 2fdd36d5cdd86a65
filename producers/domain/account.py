"""The account aggregate as two pure functions: decide(state, command) and evolve(state, event)."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from producers.domain import errors
from producers.domain.commands import Command, DepositMoney, OpenAccount
from producers.domain.events import AccountOpened, Event, MoneyDeposited

_CURRENCY = re.compile(r"^[A-Z]{3}$")


@dataclass(frozen=True)
class Account:
    owner_id: str
    currency: str
    balance: int = 0
    overdraft_limit: int = 0


def decide(state: Account | None, command: Command) -> list[Event]:
    """The events a command causes, or a DomainError naming the broken rule."""
    match command:
        case OpenAccount():
            if state is not None:
                raise errors.AccountAlreadyExists("the account already exists")
            if not _CURRENCY.match(command.currency):
                raise errors.InvalidCurrency(f"{command.currency!r} is not an ISO 4217 code")
            if command.overdraft_limit < 0:
                raise errors.InvalidOverdraftLimit("overdraft_limit must be >= 0")
            return [AccountOpened(command.owner_id, command.currency, command.overdraft_limit)]
        case DepositMoney():
            if state is None:
                raise errors.AccountNotFound("no such account")
            if command.amount <= 0:
                raise errors.InvalidAmount("amount must be > 0")
            return [MoneyDeposited(command.amount, command.reference, command.channel)]
    raise TypeError(f"not a command: {command!r}")


def evolve(state: Account | None, event: Event) -> Account:
    """The state after an event; never fails for an event that decide produced."""
    match event:
        case AccountOpened():
            return Account(event.owner_id, event.currency, 0, event.overdraft_limit)
        case MoneyDeposited():
            assert state is not None, "MoneyDeposited before AccountOpened"
            return replace(state, balance=state.balance + event.amount)
    raise TypeError(f"not an event: {event!r}")
