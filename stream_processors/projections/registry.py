"""The views a projector can build: name -> the aggregate whose events feed it, and its projection."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stream_processors.projections import accounts, transfers
from stream_processors.projections.ops import Op


@dataclass(frozen=True)
class ViewSpec:
    name: str
    source: str  # aggregate: the view reads events.<source>
    project: Callable[[str, dict[str, Any]], list[Op]]


VIEWS = {
    spec.name: spec
    for spec in (
        ViewSpec(accounts.VIEW, "account", accounts.project),
        ViewSpec(transfers.VIEW, transfers.SOURCE, transfers.project),
    )
}


def view_spec(name: str) -> ViewSpec:
    try:
        return VIEWS[name]
    except KeyError:
        raise ValueError(f"no view {name!r}; the views are {', '.join(sorted(VIEWS))}") from None
