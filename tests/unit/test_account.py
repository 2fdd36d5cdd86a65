"""decide/evolve tables for every rule of the account, boundaries included."""

from __future__ import annotations

from functools import reduce

import pytest

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
from producers.domain.account.decider import MAX_AMOUNT, Account, authorize, decide, evolve
from producers.domain.account.events import (
    AccountClosed,
    AccountCredited,
    AccountDebited,
    AccountOpened,
    MoneyDeposited,
    MoneyWithdrawn,
    OverdraftLimitChanged,
)
from producers.domain.actor import Actor, NotOwner, StaffOnly


def account(balance: int = 0, limit: int = 0, closed: bool = False) -> Account:
    return Account("alice", "EUR", balance, limit, closed)


ACCEPTED = [
    (None, OpenAccount("alice", "EUR", 500), [AccountOpened("alice", "EUR", 500)]),
    (None, OpenAccount("alice", "EUR"), [AccountOpened("alice", "EUR", 0)]),
    (account(), DepositMoney(1), [MoneyDeposited(1)]),
    (account(), DepositMoney(5, "r", "http"), [MoneyDeposited(5, "r", "http")]),
    (account(100), WithdrawMoney(100), [MoneyWithdrawn(100)]),  # down to exactly zero
    (account(0, 50), WithdrawMoney(50), [MoneyWithdrawn(50)]),  # exactly the overdraft limit
    (account(-50, 50), ChangeOverdraftLimit(50), [OverdraftLimitChanged(50)]),  # limit == -balance
    (account(10), ChangeOverdraftLimit(0), [OverdraftLimitChanged(0)]),
    (account(0), CloseAccount(), [AccountClosed()]),  # closes only at zero
    (account(30), DebitAccount("t1", 30, "b"), [AccountDebited("t1", 30, "b", "EUR")]),  # with its currency
    (account(), CreditAccount("t1", 30, "a"), [AccountCredited("t1", 30, "a")]),
    (account(closed=True), CreditAccount("t1", 30, "b", True), [AccountCredited("t1", 30, "b", True)]),
    (account(MAX_AMOUNT - 5), DepositMoney(5), [MoneyDeposited(5)]),
    (account(), CreditAccount("t1", 30, "a", False, "EUR"), [AccountCredited("t1", 30, "a")]),
    (None, OpenAccount("a", "EUR", MAX_AMOUNT), [AccountOpened("a", "EUR", MAX_AMOUNT)]),
    (None, OpenAccount("jane.doe@example.com", "CHF"), [AccountOpened("jane.doe@example.com", "CHF", 0)]),
    (None, OpenAccount("a" * 200, "JPY"), [AccountOpened("a" * 200, "JPY", 0)]),
    (None, OpenAccount("vault", "XAU"), [AccountOpened("vault", "XAU", 0)]),  # a metal account
    (
        account(),
        DepositMoney(5, "Miete März, ünë 住宅", "http"),
        [MoneyDeposited(5, "Miete März, ünë 住宅", "http")],
    ),
    (account(0, MAX_AMOUNT), WithdrawMoney(MAX_AMOUNT), [MoneyWithdrawn(MAX_AMOUNT)]),  # down to -MAX
    (account(), DepositMoney(MAX_AMOUNT), [MoneyDeposited(MAX_AMOUNT)]),
]

REJECTED = [
    (account(), OpenAccount("alice", "EUR"), errors.AccountAlreadyExists),
    (None, OpenAccount("alice", "eur"), errors.InvalidCurrency),
    (None, OpenAccount("alice", "EURO"), errors.InvalidCurrency),
    (None, OpenAccount("alice", "ZZZ"), errors.InvalidCurrency),  # three capitals, not ISO 4217
    (None, OpenAccount("alice", "XXX"), errors.InvalidCurrency),  # ISO 4217's "no currency"
    (None, OpenAccount("alice", "XTS"), errors.InvalidCurrency),  # ISO 4217's testing code
    (None, OpenAccount("a/b", "EUR"), errors.InvalidOwnerId),  # never listable under /owners/{id}
    (None, OpenAccount("a\x00", "EUR"), errors.InvalidOwnerId),
    (None, OpenAccount("a\u202eb", "EUR"), errors.InvalidOwnerId),  # right-to-left override
    (None, OpenAccount("   ", "EUR"), errors.InvalidOwnerId),
    (None, OpenAccount("", "EUR"), errors.InvalidOwnerId),
    (None, OpenAccount("a" * 201, "EUR"), errors.InvalidOwnerId),
    (account(), DepositMoney(5, "rent\u202e"), errors.InvalidReference),
    (account(), DepositMoney(5, "a\nb"), errors.InvalidReference),
    (account(), DepositMoney(5, " x "), errors.InvalidReference),
    (account(), DepositMoney(5, ""), errors.InvalidReference),
    (account(10), WithdrawMoney(5, "x" * 201), errors.InvalidReference),
    (account(10), WithdrawMoney(5, "\u200b"), errors.InvalidReference),  # zero-width space
    (None, OpenAccount("alice", "EUR", -1), errors.InvalidOverdraftLimit),
    (None, DepositMoney(100), errors.AccountNotFound),
    (None, WithdrawMoney(1), errors.AccountNotFound),
    (None, ChangeOverdraftLimit(1), errors.AccountNotFound),
    (None, CloseAccount(), errors.AccountNotFound),
    (account(), DepositMoney(0), errors.InvalidAmount),
    (account(), DepositMoney(-5), errors.InvalidAmount),
    (account(10), WithdrawMoney(0), errors.InvalidAmount),
    (account(100), WithdrawMoney(101), errors.InsufficientFunds),  # one cent below zero
    (account(0, 50), WithdrawMoney(51), errors.InsufficientFunds),  # one cent past the limit
    (account(-50, 50), ChangeOverdraftLimit(49), errors.InsufficientFunds),
    (account(), ChangeOverdraftLimit(-1), errors.InvalidOverdraftLimit),
    (account(1), CloseAccount(), errors.BalanceNotZero),
    (account(-1, 10), CloseAccount(), errors.BalanceNotZero),
    (account(closed=True), DepositMoney(5), errors.AccountClosed),
    (account(closed=True), WithdrawMoney(5), errors.AccountClosed),
    (account(closed=True), CloseAccount(), errors.AccountClosed),
    (account(closed=True), ChangeOverdraftLimit(5), errors.AccountClosed),
    (account(closed=True), CreditAccount("t", 5, "b"), errors.AccountClosed),
    (account(29), DebitAccount("t", 30, "b"), errors.InsufficientFunds),
    (None, CreditAccount("t", 5, "b"), errors.AccountNotFound),
    (account(MAX_AMOUNT - 5), DepositMoney(6), errors.BalanceLimitExceeded),
    (account(), CreditAccount("t", 5, "b", False, "CHF"), errors.CurrencyMismatch),
    # The limits live here, not only in HTTP validation: the commands topic reaches decide directly.
    (None, OpenAccount("a", "EUR", MAX_AMOUNT + 1), errors.InvalidOverdraftLimit),
    (None, OpenAccount("a", "EUR", 2**62), errors.InvalidOverdraftLimit),
    (account(), ChangeOverdraftLimit(MAX_AMOUNT + 1), errors.InvalidOverdraftLimit),
    (account(), DepositMoney(MAX_AMOUNT + 1), errors.InvalidAmount),
    (account(0, MAX_AMOUNT), WithdrawMoney(2**62 + 1), errors.InvalidAmount),
    (account(0, MAX_AMOUNT), DebitAccount("t", MAX_AMOUNT + 1, "b"), errors.InvalidAmount),
    (account(), CreditAccount("t", MAX_AMOUNT + 1, "b"), errors.InvalidAmount),
]


@pytest.mark.parametrize(("state", "command", "events"), ACCEPTED)
def test_accepted(state: Account | None, command: Command, events: list[object]) -> None:
    assert decide(state, command) == events


@pytest.mark.parametrize(("state", "command", "error"), REJECTED)
def test_rejected(state: Account | None, command: Command, error: type[errors.DomainError]) -> None:
    with pytest.raises(error) as raised:
        decide(state, command)
    assert raised.value.reason == error.reason != "rejected"


def test_evolve_folds_every_event_into_the_state() -> None:
    history = [
        AccountOpened("alice", "EUR", 100),
        MoneyDeposited(1000),
        MoneyWithdrawn(300),
        AccountDebited("t", 200, "b"),
        AccountCredited("t2", 50, "c"),
        OverdraftLimitChanged(0),
        MoneyWithdrawn(550),
        AccountClosed(),
    ]
    state = reduce(evolve, history, None)  # type: ignore[arg-type]
    assert state == Account("alice", "EUR", 0, 0, closed=True)


def test_a_decided_event_always_evolves() -> None:
    for state, command, _ in ACCEPTED:
        for event in decide(state, command):
            evolve(state, event)


def test_no_sequence_of_accepted_commands_takes_a_balance_past_the_limits() -> None:
    """Largest overdraft, then the largest withdrawal: -MAX exactly, and nothing further."""
    state = evolve(None, AccountOpened("a", "EUR", MAX_AMOUNT))
    for event in decide(state, WithdrawMoney(MAX_AMOUNT)):
        state = evolve(state, event)
    assert state.balance == -MAX_AMOUNT
    with pytest.raises(errors.InsufficientFunds):
        decide(state, WithdrawMoney(1))


# -- who may do what ---------------------------------------------------------------------------

ALICE, TELLER = Actor("alice", "alice"), Actor("teller")
ALICES = Account("alice", "EUR", balance=100)


@pytest.mark.parametrize(
    ("state", "command", "actor"),
    [
        (ALICES, WithdrawMoney(5), ALICE),
        (ALICES, CloseAccount(), ALICE),
        (None, OpenAccount("alice", "EUR"), ALICE),
        (Account("bob", "EUR"), CreditAccount("t", 5, "alices"), ALICE),  # a transfer's target
        (Account("bob", "EUR"), WithdrawMoney(5), TELLER),  # staff act on any account
        (Account("bob", "EUR"), ChangeOverdraftLimit(50), TELLER),
        (Account("bob", "EUR"), WithdrawMoney(5), None),  # a system that named no actor
    ],
)
def test_allowed(state: Account | None, command: Command, actor: Actor | None) -> None:
    authorize(state, command, actor)


@pytest.mark.parametrize(
    ("state", "command", "error"),
    [
        (Account("bob", "EUR"), WithdrawMoney(5), NotOwner),
        (Account("bob", "EUR"), DepositMoney(5), NotOwner),
        (Account("bob", "EUR"), DebitAccount("t", 5, "alices"), NotOwner),  # a transfer out of bob's
        (Account("bob", "EUR"), CloseAccount(), NotOwner),
        (None, OpenAccount("bob", "EUR"), NotOwner),
        (None, OpenAccount("alice", "EUR", overdraft_limit=10), StaffOnly),
        (ALICES, ChangeOverdraftLimit(50), StaffOnly),
    ],
)
def test_a_customer_acts_only_on_its_own(
    state: Account | None, command: Command, error: type[Exception]
) -> None:
    with pytest.raises(error):
        authorize(state, command, ALICE)
