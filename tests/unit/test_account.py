from __future__ import annotations

import pytest

from producers.domain import errors
from producers.domain.account import Account, decide, evolve
from producers.domain.commands import DepositMoney, OpenAccount
from producers.domain.events import AccountOpened, MoneyDeposited

OPEN = Account("alice", "EUR", 0, 0)


def test_open_account_emits_account_opened() -> None:
    assert decide(None, OpenAccount("alice", "EUR", 500)) == [AccountOpened("alice", "EUR", 500)]


@pytest.mark.parametrize(
    ("state", "command", "error"),
    [
        (OPEN, OpenAccount("alice", "EUR"), errors.AccountAlreadyExists),
        (None, OpenAccount("alice", "eur"), errors.InvalidCurrency),
        (None, OpenAccount("alice", "EURO"), errors.InvalidCurrency),
        (None, OpenAccount("alice", "EUR", -1), errors.InvalidOverdraftLimit),
        (None, DepositMoney(100), errors.AccountNotFound),
        (OPEN, DepositMoney(0), errors.InvalidAmount),
        (OPEN, DepositMoney(-5), errors.InvalidAmount),
    ],
)
def test_rules(state: Account | None, command: object, error: type[errors.DomainError]) -> None:
    with pytest.raises(error) as raised:
        decide(state, command)  # type: ignore[arg-type]
    assert raised.value.reason != "rejected"


def test_deposit_then_evolve_adds_to_balance() -> None:
    events = decide(OPEN, DepositMoney(1250, "ref"))
    assert events == [MoneyDeposited(1250, "ref")]
    state = evolve(evolve(None, AccountOpened("alice", "EUR", 0)), events[0])
    assert state.balance == 1250
