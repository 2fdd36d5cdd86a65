"""What every view module shares: its spec (the one thing the registry needs), the error for an
event its projection has no rule for, timestamps as text, typed rows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stream_processors.ops import Op

Projection = Callable[[str, dict[str, Any]], list[Op]]  # (event type, decoded event) -> ops


@dataclass(frozen=True)
class ViewSpec:
    """A view module's module-level `VIEW`."""

    name: str  # `view:<name>:…` in Redis, PROJECTOR_VIEW of its projector
    source: str  # the aggregate whose events feed it: events.<source>
    project: Projection
    # The query API serves it: its routes, `?after=` waits on its checkpoints, `/views`.
    queried: bool = True
    # `/readyz` waits for it. A read model added later is backfilled from the whole log on its
    # first start; that must not take the query API out of rotation for the other views.
    gates_readiness: bool = True


class UnknownEventType(ValueError):
    """The projection has no rule for the event; it goes to the dead letters."""


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def typed(row: dict[str, str], int_fields: tuple[str, ...]) -> dict[str, Any]:
    """A row as the HTTP contract has it: these fields as integers, the others as text."""
    out: dict[str, Any] = dict(row)
    for name in int_fields:
        out[name] = int(out[name])
    return out
