"""What every aggregate's command routes share: the bus dependency, the Idempotency-Key and
If-Match headers, and submitting one command and mapping a rejection to its HTTP error."""

from __future__ import annotations

import email.message
import re
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException, Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict

from auth.tokens import Principal
from producers.api.errors import CommandRejected, ErrorBody, InvalidHeader
from producers.api.gateway import CommandBus
from producers.domain.actor import Actor
from producers.engine.handler import CommandEnvelope, Outcome

_VERSION = re.compile(r'(?:W/)?("?)([0-9]{1,19})\1')  # ASCII digits only (str.isdigit takes "²")
MAX_VERSION = 2**63 - 1  # an Avro long, as expected_version is on the wire
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


UNAVAILABLE = (
    "`broker_unavailable`: Kafka is unreachable, the command was not sent; retry after `Retry-After` "
    "seconds with the same Idempotency-Key"
)
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}


def errors(**texts: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI error responses: status -> description, each with the {error, detail} body (and the
    Retry-After header on 503)."""
    documented: dict[int | str, dict[str, Any]] = {}
    for code, text in texts.items():
        status = int(code.removeprefix("s"))
        documented[status] = {"model": ErrorBody, "description": text}
        if status == 503:
            documented[status]["headers"] = _RETRY_AFTER
    return documented


def keyed_id(scope: str, key: str | None) -> str:
    """A stable id for an Idempotency-Key within a scope (an aggregate id, or what is created)."""
    return str(uuid.uuid5(_KEYS, f"{scope}:{key}")) if key else str(uuid.uuid4())


def _expected_version(if_match: str | None) -> int | None:
    if if_match is None:
        return None
    match = _VERSION.fullmatch(if_match.strip())
    if match is None or int(match[2]) > MAX_VERSION:
        raise InvalidHeader("If-Match", f'must be a quoted version number from 0 to {MAX_VERSION}, e.g. "3"')
    return int(match[2])


def is_json(content_type: str) -> bool:
    """application/json (any parameters, e.g. charset=utf-8) or application/<anything>+json."""
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


class JsonRoute(APIRoute):
    """A route with a body takes JSON only: any other body is 415, before it is read or parsed."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def json_only(request: Request) -> Response:
            headers = request.headers
            has_body = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
            if has_body and not is_json(headers.get("content-type", "")):
                raise HTTPException(
                    415, "the body must be JSON: Content-Type application/json (or application/*+json)"
                )
            return await handler(request)

        return json_only


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
