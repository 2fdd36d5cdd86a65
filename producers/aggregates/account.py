"""The account aggregate, as the engine sees it."""

from __future__ import annotations

from typing import get_args

from producers.api import accounts
from producers.domain.account import commands, events
from producers.domain.account.decider import Account, authorize, decide, evolve
from producers.engine.aggregate import Aggregate

AGGREGATE = Aggregate(
    name="account",
    state=Account,
    decide=decide,
    evolve=evolve,
    commands=get_args(commands.Command),
    events=get_args(events.Event),
    snapshot="AccountSnapshot",
    router=accounts.router,
    authorize=authorize,
)
