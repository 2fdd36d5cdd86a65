"""The transfer aggregate, as the engine sees it (its process runs in stream_processors/)."""

from __future__ import annotations

from typing import get_args

from producers.api import transfers
from producers.domain.transfer import commands, events
from producers.domain.transfer.decider import Transfer, decide, evolve
from producers.engine.aggregate import Aggregate

AGGREGATE = Aggregate(
    name="transfer",
    state=Transfer,
    decide=decide,
    evolve=evolve,
    commands=get_args(commands.Command),
    events=get_args(events.Event),
    snapshot="TransferSnapshot",
    router=transfers.router,
)
