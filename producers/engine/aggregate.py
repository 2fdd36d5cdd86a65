"""What an aggregate declares to the engine: its decider (and, optionally, who may do what), its
commands and events (dataclasses named like their schema records), its state (whose fields, with
aggregate_id, version and taken_at, are its snapshot record) and its HTTP routes."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter


@dataclass(frozen=True)
class Aggregate:
    name: str  # the aggregate type: topics commands.<name>, events.<name> ...; envelope aggregate_type
    state: type[Any]  # a frozen dataclass
    decide: Callable[[Any, Any], list[Any]]  # (state | None, command) -> events, or a DomainError
    evolve: Callable[[Any, Any], Any]  # (state | None, event) -> state
    commands: tuple[type[Any], ...]
    events: tuple[type[Any], ...]
    snapshot: str  # record name of the snapshot schema
    # (state | None, command, actor | None) -> None, or a DomainError: who may do what
    authorize: Callable[[Any, Any, Any], None] | None = None
    router: APIRouter | None = None  # its HTTP command routes
    _by_name: dict[str, dict[str, type[Any]]] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_name["command"] = {c.__name__: c for c in self.commands}
        self._by_name["event"] = {e.__name__: e for e in self.events}
        for cls in (*self.commands, *self.events, self.state):
            if not dataclasses.is_dataclass(cls):
                raise TypeError(f"{self.name}: {cls.__name__} must be a dataclass")

    def command_class(self, name: str) -> type[Any] | None:
        return self._by_name["command"].get(name)

    def event_class(self, name: str) -> type[Any] | None:
        return self._by_name["event"].get(name)
