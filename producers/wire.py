"""Maps domain commands and events to and from the Avro records of the contract (the edge)."""

from __future__ import annotations

import dataclasses
import typing
from datetime import datetime
from typing import Any

from producers.domain import commands, events
from producers.domain.account import Account
from producers.handler import CommandEnvelope, Outcome, Stream

AGGREGATE_TYPE = "account"

_COMMANDS: dict[str, type[Any]] = {c.__name__: c for c in typing.get_args(commands.Command)}
_EVENTS: dict[str, type[Any]] = {e.__name__: e for e in typing.get_args(events.Event)}


class UnknownMessageType(ValueError):
    """A record name this side has no class for."""


_FIELD_NAMES: dict[type[Any], tuple[str, ...]] = {}


def _field_names(cls: type[Any]) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def payload(obj: Any) -> dict[str, Any]:
    """The fields of a (flat) command or event dataclass."""
    return {name: getattr(obj, name) for name in _field_names(type(obj))}


def _build(classes: dict[str, type[Any]], name: str, record: dict[str, Any]) -> Any:
    cls = classes.get(name)
    if cls is None:
        raise UnknownMessageType(f"unknown message type {name!r}")
    return cls(**{name: record[name] for name in _field_names(cls)})


def command_to_record(envelope: CommandEnvelope, command: commands.Command) -> tuple[str, dict[str, Any]]:
    record = {
        "command_id": envelope.command_id,
        "aggregate_id": envelope.aggregate_id,
        "expected_version": envelope.expected_version,
        "correlation_id": envelope.correlation_id,
        "issued_at": envelope.issued_at,
        **payload(command),
    }
    return type(command).__name__, record


def command_from_record(name: str, record: dict[str, Any]) -> tuple[CommandEnvelope, commands.Command]:
    envelope = CommandEnvelope(
        command_id=record["command_id"],
        aggregate_id=record["aggregate_id"],
        correlation_id=record["correlation_id"],
        issued_at=record["issued_at"],
        expected_version=record["expected_version"],
    )
    command: commands.Command = _build(_COMMANDS, name, record)
    return envelope, command


def event_to_record(
    event: events.Event,
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
        "aggregate_type": AGGREGATE_TYPE,
        "aggregate_id": aggregate_id,
        "version": version,
        "event_type": name,
        "occurred_at": occurred_at,
        "command_id": command.command_id,
        "correlation_id": command.correlation_id,
        "causation_id": command.command_id,
        **payload(event),
    }
    return name, record


def event_from_record(name: str, record: dict[str, Any]) -> events.Event:
    event: events.Event = _build(_EVENTS, name, record)
    return event


CHECKPOINT_PREFIX = "_checkpoint."  # snapshot-topic key of a partition checkpoint (ids never start with _)


def snapshot_to_record(aggregate_id: str, stream: Stream, taken_at: datetime) -> dict[str, Any]:
    state = stream.state
    assert state is not None, "only opened accounts are snapshotted"
    return {
        "aggregate_id": aggregate_id,
        "version": stream.version,
        "owner_id": state.owner_id,
        "currency": state.currency,
        "balance": state.balance,
        "overdraft_limit": state.overdraft_limit,
        "closed": state.closed,
        "taken_at": taken_at,
    }


def stream_from_snapshot(record: dict[str, Any]) -> Stream:
    state = Account(
        record["owner_id"],
        record["currency"],
        record["balance"],
        record["overdraft_limit"],
        record["closed"],
    )
    return Stream(state, record["version"])


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
