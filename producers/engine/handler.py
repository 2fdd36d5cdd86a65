"""Per-command rules around any aggregate's decider: idempotency by command id, expected version,
who may do it (the aggregate's authorize), then decide."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from producers.domain.actor import Actor
from producers.domain.errors import DomainError
from producers.engine.aggregate import Aggregate


@dataclass(frozen=True)
class CommandEnvelope:
    command_id: str
    aggregate_id: str
    correlation_id: str
    issued_at: datetime
    expected_version: int | None = None
    actor: Actor | None = None  # None: a system that named no actor (older senders)


@dataclass
class Stream:
    """What the single writer knows about one aggregate instance."""

    state: Any = None
    version: int = 0

    def apply(self, aggregate: Aggregate, event: Any, version: int) -> None:
        if version != self.version + 1:
            raise ValueError(f"version {version} does not follow {self.version}")
        self.state = aggregate.evolve(self.state, event)
        self.version = version


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a command did; a retry with the same command id gets exactly this again."""

    accepted: bool
    version: int
    position: str | None
    reason: str | None
    detail: str | None
    request_hash: str | None


# Results with these reasons answer a delivery, not the command: a retry is decided afresh, so they
# are never replayed for the command id (neither from memory nor after reloading the results).
NOT_OUTCOMES = frozenset({"idempotency_key_reused", "wrong_partition", "malformed_command"})


@dataclass(frozen=True)
class Accepted:
    events: list[Any]
    first_version: int  # version of events[0]; the rest follow contiguously


@dataclass(frozen=True)
class Rejected:
    reason: str
    detail: str
    version: int  # the aggregate's current version
    remember: bool = True  # False: not this command's outcome (a misused id), so not replayed


@dataclass(frozen=True)
class AlreadyHandled:
    previous: Outcome


Decision = Accepted | Rejected | AlreadyHandled


def request_hash(envelope: CommandEnvelope, command: Any) -> str:
    """Digest of what the command asks for, so a reused command id with another body is caught."""
    body = (type(command).__name__, envelope.aggregate_id, envelope.expected_version, command)
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


def handle(
    aggregate: Aggregate,
    stream: Stream,
    envelope: CommandEnvelope,
    command: Any,
    previous: Outcome | None,
    digest: str,
) -> Decision:
    """Decide one command against one aggregate's stream. Pure: the caller appends."""
    if previous is not None:
        if previous.request_hash is not None and previous.request_hash != digest:
            return Rejected(
                "idempotency_key_reused",
                "this command id was used before for a different request",
                stream.version,
                remember=False,
            )
        return AlreadyHandled(previous)
    if envelope.expected_version is not None and envelope.expected_version != stream.version:
        return Rejected(
            "version_mismatch",
            f"expected version {envelope.expected_version}, the aggregate is at {stream.version}",
            stream.version,
        )
    try:
        if aggregate.authorize is not None:
            aggregate.authorize(stream.state, command, envelope.actor)
        events = aggregate.decide(stream.state, command)
    except DomainError as exc:
        return Rejected(exc.reason, exc.detail, stream.version)
    return Accepted(events, stream.version + 1)
