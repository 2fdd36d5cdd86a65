"""A toy aggregate declared from tests/ alone (the recipe "add an aggregate"): a counter that only
goes up. Its schemas are in tests/support/toy_avro and reach the processors through the schemas
topic (`cqrs schemas register`); it joins the registry through CQRS_EXTRA_MODULES."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from pydantic import Field, StrictInt

from auth.http import requires
from auth.tokens import Principal
from producers.api.submit import Body, Bus, submit
from producers.domain.errors import DomainError
from producers.engine.aggregate import Aggregate


@dataclass(frozen=True)
class Increment:
    by: int


@dataclass(frozen=True)
class Incremented:
    by: int


@dataclass(frozen=True)
class Counter:
    total: int = 0


class NotUpwards(DomainError):
    reason = "invalid_amount"


def decide(state: Counter | None, command: Increment) -> list[Incremented]:
    if command.by <= 0:
        raise NotUpwards("a counter only goes up")
    return [Incremented(command.by)]


def evolve(state: Counter | None, event: Incremented) -> Counter:
    return replace(state or Counter(), total=(state or Counter()).total + event.by)


router = APIRouter(tags=["counters"])


class IncrementBody(Body):
    by: StrictInt = Field(gt=0)


@router.post("/counters/{counter_id}/increments")
async def increment(
    counter_id: str,
    body: IncrementBody,
    who: Annotated[Principal, Depends(requires("counters:write"))],  # an aggregate names its scopes
    bus: Bus,
    response: Response,
) -> dict[str, int]:
    outcome = await submit(who, bus, response, "counter", counter_id, Increment(body.by), None)
    return {"version": outcome.version or 0}


AGGREGATE = Aggregate(
    name="counter",
    state=Counter,
    decide=decide,
    evolve=evolve,
    commands=(Increment,),
    events=(Incremented,),
    snapshot="CounterSnapshot",
    router=router,
)
