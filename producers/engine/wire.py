"""Maps any aggregate's commands, events and snapshots to and from the Avro records of the contract
(the edge), and results to outcomes. Records and dataclasses match by name, field by field."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from producers.domain.actor import Actor
from producers.engine.aggregate import Aggregate
from producers.engine.handler import CommandEnvelope, Outcome, Stream
from schemas.headers import ACTOR_HEADER, ACTOR_OWNER_ID_HEADER, COMMAND_ID_HEADER

CHECKPOINT_PREFIX = "_checkpoint."  # snapshot-topic key of a partition checkpoint (ids never start with _)


class UnknownMessageType(ValueError):
    """A record name this aggregate has no class for."""


_FIELD_NAMES: dict[type[Any], tuple[str, ...]] = {}


def _field_names(cls: type[Any]) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def payload(obj: Any) -> dict[str, Any]:
    """The fields of a (flat) command, event or state dataclass."""
    return {name: getattr(obj, name) for name in _field_names(type(obj))}


def _build(cls: type[Any] | None, name: str, record: dict[str, Any]) -> Any:
    if cls is None:
        raise UnknownMessageType(f"unknown message type {name!r}")
    return cls(**{field: record[field] for field in _field_names(cls)})


def command_to_record(envelope: CommandEnvelope, command: Any) -> tuple[str, dict[str, Any]]:
    record = {
        "command_id": envelope.command_id,
        "aggregate_id": envelope.aggregate_id,
        "expected_version": envelope.expected_version,
        "correlation_id": envelope.correlation_id,
        "issued_at": envelope.issued_at,
        **payload(command),
    }
    return type(command).__name__, record


def command_headers(envelope: CommandEnvelope) -> list[tuple[str, str | bytes | None]]:
    """The contract's headers of a command: its id, and who asks for it."""
    headers: list[tuple[str, str | bytes | None]] = [(COMMAND_ID_HEADER, envelope.command_id.encode())]
    if envelope.actor is not None:
        headers.append((ACTOR_HEADER, envelope.actor.subject.encode()))
        if envelope.actor.owner_id is not None:
            headers.append((ACTOR_OWNER_ID_HEADER, envelope.actor.owner_id.encode()))
    return headers


def command_from_record(
    aggregate: Aggregate, name: str, record: dict[str, Any], actor: Actor | None = None
) -> tuple[CommandEnvelope, Any]:
    command_class = aggregate.command_class(name)
    if command_class is None:  # before the envelope: an event sent as a command is told so
        raise UnknownMessageType(f"{name!r} is not a command of {aggregate.name}")
    envelope = CommandEnvelope(
        command_id=record["command_id"],
        aggregate_id=record["aggregate_id"],
        correlation_id=record["correlation_id"],
        issued_at=record["issued_at"],
        expected_version=record["expected_version"],
        actor=actor,
    )
    return envelope, _build(command_class, name, record)


def event_to_record(
    aggregate: Aggregate,
    event: Any,
    *,
    event_id: str,
    aggregate_id: str,
    version: int,
    occurred_at: datetime,
    command: CommandEnvelope,
) -> tuple[str, dict[str, Any]]:
    name = type(event).__name__
    record = {
        "event_id": event_id,
        "aggregate_type": aggregate.name,
        "aggregate_id": aggregate_id,
        "version": version,
        "event_type": name,
        "occurred_at": occurred_at,
        "command_id": command.command_id,
        "correlation_id": command.correlation_id,
        "causation_id": command.command_id,
        "actor": command.actor.subject if command.actor else None,
        "actor_owner_id": command.actor.owner_id if command.actor else None,
        **payload(event),
    }
    return name, record


def event_from_record(aggregate: Aggregate, name: str, record: dict[str, Any]) -> Any:
    return _build(aggregate.event_class(name), name, record)


def snapshot_to_record(aggregate_id: str, stream: Stream, taken_at: datetime) -> dict[str, Any]:
    assert stream.state is not None, "only aggregates with a state are snapshotted"
    return {
        "aggregate_id": aggregate_id,
        "version": stream.version,
        "taken_at": taken_at,
        **payload(stream.state),
    }


def stream_from_snapshot(aggregate: Aggregate, record: dict[str, Any]) -> Stream:
    return Stream(_build(aggregate.state, aggregate.snapshot, record), record["version"])


def rejection_reasons(codec: Any) -> frozenset[str]:
    """The symbols of the result schema's RejectionReason enum (a reason outside them is `other`)."""
    schema = codec.registry.latest("CommandResult").raw
    for field in schema["fields"]:
        if field["name"] == "reason_code":
            enum = next(t for t in field["type"] if isinstance(t, dict))
            return frozenset(enum["symbols"])
    return frozenset()


def outcome_from_result(record: dict[str, Any]) -> Outcome:
    return Outcome(
        accepted=record["status"] == "ACCEPTED",
        version=record["version"] or 0,
        position=record["position"],
        reason=record["reason"],
        detail=record["detail"],
        request_hash=record["request_hash"],
    )
