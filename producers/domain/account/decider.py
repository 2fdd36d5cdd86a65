"""The account aggregate as pure functions: authorize(state, command, actor), decide(state, command)
and evolve(state, event)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from producers.domain.account import errors
from producers.domain.account.commands import (
    ChangeOverdraftLimit,
    CloseAccount,
    Command,
    CreditAccount,
    DebitAccount,
    DepositMoney,
    OpenAccount,
    WithdrawMoney,
)
from producers.domain.account.events import (
    AccountClosed,
    AccountCredited,
    AccountDebited,
    AccountOpened,
    Event,
    MoneyDeposited,
    MoneyWithdrawn,
    OverdraftLimitChanged,
)
from producers.domain.account.text import currency_problem, owner_id_problem, reference_problem
from producers.domain.actor import Actor, NotOwner, StaffOnly

# The largest amount, overdraft limit and |balance|: exact in every JSON reader, in JavaScript and
# in Redis Lua numbers (doubles), so a view's balance and balance_after can never disagree.
MAX_AMOUNT = 2**53 - 1


@dataclass(frozen=True)
class Account:
    owner_id: str
    currency: str
    balance: int = 0
    overdraft_limit: int = 0
    closed: bool = False


def authorize(state: Account | None, command: Command, actor: Actor | None) -> None:
    """Who may do what. Staff and systems (an actor without an owner id, or none) may do anything
    the rules allow; a customer acts only on accounts it owns, opens accounts only for itself, and
    may not set an overdraft. Money may be credited to anyone's account (a transfer's target)."""
    if actor is None or not actor.is_customer:
        return
    match command:
        case OpenAccount(owner_id=owner_id, overdraft_limit=limit):
            if owner_id != actor.owner_id:
                raise NotOwner(f"{actor.subject} may open accounts only for owner {actor.owner_id}")
            if limit != 0:
                raise StaffOnly("only staff may grant an overdraft")
        case ChangeOverdraftLimit():
            raise StaffOnly("only staff may change an overdraft limit")
        case CreditAccount():
            return
        case _:
            if state is not None and state.owner_id != actor.owner_id:
                raise NotOwner(f"{actor.subject} does not own this account")


def _open(state: Account | None) -> Account:
    if state is None:
        raise errors.AccountNotFound("no such account")
    if state.closed:
        raise errors.AccountClosed("the account is closed")
    return state


def _amount(amount: int) -> None:
    if not 0 < amount <= MAX_AMOUNT:
        raise errors.InvalidAmount(f"amount must be > 0 and <= {MAX_AMOUNT}, not {amount}")


def _overdraft_limit(limit: int) -> None:
    if not 0 <= limit <= MAX_AMOUNT:
        raise errors.InvalidOverdraftLimit(f"overdraft_limit must be >= 0 and <= {MAX_AMOUNT}, not {limit}")


def _reference(reference: str | None) -> None:
    if reference is not None and (problem := reference_problem(reference)):
        raise errors.InvalidReference(problem)


def _take(state: Account | None, amount: int) -> Account:
    account = _open(state)
    _amount(amount)
    if account.balance - amount < -account.overdraft_limit:
        raise errors.InsufficientFunds(
            f"balance {account.balance} minus {amount} would be {account.balance - amount}, "
            f"below what the overdraft limit of {account.overdraft_limit} allows"
        )
    return account


def _give(state: Account | None, amount: int, *, allow_closed: bool = False) -> Account:
    if state is None:
        raise errors.AccountNotFound("no such account")
    account = state if allow_closed else _open(state)
    _amount(amount)
    if account.balance + amount > MAX_AMOUNT:
        raise errors.BalanceLimitExceeded("the balance would exceed the largest allowed")
    return account


def decide(state: Account | None, command: Command) -> list[Event]:
    """The events a command causes, or a DomainError naming the broken rule."""
    match command:
        case OpenAccount(owner_id, currency, overdraft_limit):
            if state is not None:
                raise errors.AccountAlreadyExists("the account already exists")
            if problem := owner_id_problem(owner_id):
                raise errors.InvalidOwnerId(problem)
            if problem := currency_problem(currency):
                raise errors.InvalidCurrency(problem)
            _overdraft_limit(overdraft_limit)
            return [AccountOpened(owner_id, currency, overdraft_limit)]
        case DepositMoney(amount, reference, channel):
            _give(state, amount)
            _reference(reference)
            return [MoneyDeposited(amount, reference, channel)]
        case WithdrawMoney(amount, reference):
            _take(state, amount)
            _reference(reference)
            return [MoneyWithdrawn(amount, reference)]
        case ChangeOverdraftLimit(limit):
            account = _open(state)
            _overdraft_limit(limit)
            if account.balance < -limit:
                raise errors.InsufficientFunds(
                    f"the balance {account.balance} is below what an overdraft limit of {limit} allows"
                )
            return [OverdraftLimitChanged(limit)]
        case CloseAccount():
            account = _open(state)
            if account.balance != 0:
                raise errors.BalanceNotZero(f"the balance is {account.balance}, not 0")
            return [AccountClosed()]
        case DebitAccount(transfer_id, amount, counterparty):
            account = _take(state, amount)
            return [AccountDebited(transfer_id, amount, counterparty, account.currency)]
        case CreditAccount(transfer_id, amount, counterparty, reversal, currency):
            # A reversal returns money that left this account, so it lands even if closed since.
            account = _give(state, amount, allow_closed=reversal)
            if currency is not None and currency != account.currency:
                raise errors.CurrencyMismatch(
                    f"the account is in {account.currency}, the money in {currency}"
                )
            return [AccountCredited(transfer_id, amount, counterparty, reversal)]
    raise TypeError(f"not a command: {command!r}")


def evolve(state: Account | None, event: Event) -> Account:
    """The state after an event; never fails for an event that decide produced."""
    if isinstance(event, AccountOpened):
        return Account(event.owner_id, event.currency, 0, event.overdraft_limit)
    assert state is not None, f"{type(event).__name__} before AccountOpened"
    match event:
        case MoneyDeposited(amount) | AccountCredited(_, amount):
            return replace(state, balance=state.balance + amount)
        case MoneyWithdrawn(amount) | AccountDebited(_, amount):
            return replace(state, balance=state.balance - amount)
        case OverdraftLimitChanged(limit):
            return replace(state, overdraft_limit=limit)
        case AccountClosed():
            return replace(state, closed=True)
    raise TypeError(f"not an event: {event!r}")
