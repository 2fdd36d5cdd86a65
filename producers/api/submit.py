"""What every aggregate's command routes share: the bus dependency, the Idempotency-Key and
If-Match headers, and submitting one command and mapping a rejection to its HTTP error."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Header, Request, Response
from pydantic import BaseModel, ConfigDict

from auth.tokens import Principal
from producers.api.errors import CommandRejected, ErrorBody, InvalidHeader
from producers.api.gateway import CommandBus
from producers.domain.actor import Actor
from producers.engine.handler import CommandEnvelope, Outcome

_KEYS = uuid.UUID("6f1d8a52-3c1e-4b8e-9a57-0d7a0e1f2b44")  # namespace for Idempotency-Key ids


async def get_bus(request: Request) -> CommandBus:
    bus: CommandBus = request.app.state.gateway
    return bus


Bus = Annotated[CommandBus, Depends(get_bus)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="Retry safely: the same key and body give the same answer and one effect.",
    ),
]
IfMatch = Annotated[
    str | None,
    Header(alias="If-Match", max_length=40, description='Expected version, e.g. "3"; 412 if stale.'),
]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


def errors(**texts: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI error responses: status -> description, each with the {error, detail} body."""
    return {
        int(code.removeprefix("s")): {"model": ErrorBody, "description": text} for code, text in texts.items()
    }


def keyed_id(scope: str, key: str | None) -> str:
    """A stable id for an Idempotency-Key within a scope (an aggregate id, or what is created)."""
    return str(uuid.uuid5(_KEYS, f"{scope}:{key}")) if key else str(uuid.uuid4())


def _expected_version(if_match: str | None) -> int | None:
    if if_match is None:
        return None
    text = if_match.strip().removeprefix("W/").strip('"')
    if not text.isdigit():
        raise InvalidHeader("If-Match", 'must be a quoted version number, e.g. "3"')
    return int(text)


async def submit(
    who: Principal,
    bus: CommandBus,
    response: Response,
    aggregate: str,
    aggregate_id: str,
    command: Any,
    key: str | None,
    if_match: str | None = None,
) -> Outcome:
    """Submit one command for `who` (its actor) and wait for its outcome; a rejection raises
    CommandRejected. Sets X-Position and ETag on the response."""
    # A key is scoped to its caller and aggregate: the same key from another caller or on another
    # aggregate is another command.
    command_id = keyed_id(f"{who.subject}:{aggregate_id}", key)
    envelope = CommandEnvelope(
        command_id=command_id,
        aggregate_id=aggregate_id,
        correlation_id=command_id,
        issued_at=datetime.now(UTC),
        expected_version=_expected_version(if_match),
        actor=Actor(who.subject, who.owner_id),
    )
    outcome = await bus.submit(aggregate, envelope, command)
    if not outcome.accepted:
        raise CommandRejected(outcome.reason or "rejected", outcome.detail or "", outcome.version)
    assert outcome.version is not None and outcome.position is not None
    response.headers["X-Position"] = outcome.position
    response.headers["ETag"] = f'"{outcome.version}"'
    return outcome
