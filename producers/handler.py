"""Per-command rules around the domain: expected version, idempotency by command id, then decide."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime

from producers.domain.account import Account, decide, evolve
from producers.domain.commands import Command
from producers.domain.errors import DomainError
from producers.domain.events import Event

# How many handled command ids each aggregate remembers (newest kept). A retry older than this
# window is treated as a new command. Documented in the README.
IDEMPOTENCY_WINDOW = 1000


@dataclass(frozen=True)
class CommandEnvelope:
    command_id: str
    aggregate_id: str
    correlation_id: str
    issued_at: datetime
    expected_version: int | None = None


@dataclass(frozen=True)
class Handled:
    """What a command already did: the version it left and where its last event sits."""

    version: int
    position: str


@dataclass
class Stream:
    """Everything the single writer knows about one aggregate."""

    state: Account | None = None
    version: int = 0
    handled: OrderedDict[str, Handled] = field(default_factory=OrderedDict)

    def copy(self) -> Stream:
        return Stream(self.state, self.version, OrderedDict(self.handled))

    def apply(self, event: Event, version: int, command_id: str, position: str) -> None:
        if version != self.version + 1:
            raise ValueError(f"version {version} does not follow {self.version}")
        self.state = evolve(self.state, event)
        self.version = version
        self.handled[command_id] = Handled(version, position)
        self.handled.move_to_end(command_id)
        while len(self.handled) > IDEMPOTENCY_WINDOW:
            self.handled.popitem(last=False)


@dataclass(frozen=True)
class Accepted:
    events: list[Event]
    first_version: int  # version of events[0]; the rest follow contiguously


@dataclass(frozen=True)
class Rejected:
    reason: str
    detail: str
    version: int  # the aggregate's current version


@dataclass(frozen=True)
class AlreadyHandled:
    previous: Handled


Decision = Accepted | Rejected | AlreadyHandled


def handle(stream: Stream, envelope: CommandEnvelope, command: Command) -> Decision:
    """Decide one command against one aggregate's stream. Pure: the caller appends."""
    previous = stream.handled.get(envelope.command_id)
    if previous is not None:
        return AlreadyHandled(previous)
    if envelope.expected_version is not None and envelope.expected_version != stream.version:
        return Rejected(
            "version_mismatch",
            f"expected version {envelope.expected_version}, the aggregate is at {stream.version}",
            stream.version,
        )
    try:
        events = decide(stream.state, command)
    except DomainError as exc:
        return Rejected(exc.reason, exc.detail, stream.version)
    return Accepted(events, stream.version + 1)
