"""The ports of a view store: what the projector needs to write one generation of a view with an
exactly-once effect (ViewStore), and what queries need to read the current generation (ViewReads).

Adapters: Redis (stream_processors/view_writer.py writes, query_api/views.py reads) and the tests'
in-memory fake (tests/support/fake_views.py); tests/integration/test_view_store_contract.py holds
both to the same contract."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from stream_processors.ops import Op, Read


@dataclass(frozen=True)
class ProjectedEvent:
    partition: int
    offset: int
    ops: list[Op]
    subject: str | None = None  # the view row it changed (e.g. an account id), for notifications
    version: int | None = None


@dataclass(frozen=True)
class GenerationState:
    current: int | None  # the view's current generation
    meta_state: str | None  # this generation's state; None when its metadata is gone
    caught_up: bool  # its checkpoints have reached its targets


class ViewStore(Protocol):
    """One generation of one view, as its projector writes it."""

    view: str
    generation: int
    # Checkpoints as last seen; they only grow, so anything at or below is surely applied.
    known_checkpoints: dict[int, int]
    # Whether queries read this generation: a generation being built has no readers to notify.
    serving: bool

    async def apply(self, events: Sequence[ProjectedEvent]) -> list[ProjectedEvent]:
        """Applies the events' ops and moves the checkpoints, all or nothing, skipping events at or
        below the checkpoint; returns the events applied now. Raises GenerationLost, applying
        nothing, when a partition's checkpoint it knew is gone."""
        ...

    async def load_checkpoints(self, partitions: Sequence[int]) -> dict[int, int]:
        """The stored checkpoints of these partitions (those that have one), remembered as known."""
        ...

    async def record_commits(self, offsets: Mapping[int, int]) -> None:
        """The group offsets this generation's readers committed last (an offset found below them
        later was set by an operator: a rebuild request)."""
        ...

    async def apply_once(self, marker: str, ops: Sequence[Op]) -> bool:
        """Applies ops unless `marker` was applied before (re-driven dead letters)."""
        ...

    async def notify(self, applied: Sequence[ProjectedEvent]) -> None:
        """One change notification per changed row, after a committed batch (when serving)."""
        ...

    async def publish_status(self, lags: dict[int, int], now_ms: int) -> None: ...

    async def generation_state(self) -> GenerationState: ...

    async def go_live(self) -> None: ...


class GenerationLost(Exception):
    """The generation's checkpoints vanished under a writer that had seen them (Redis restarted
    empty, or flushed, or the generation was dropped): writing on would build on nothing. The
    projector follows `current` again (recovery.py builds a new generation from the log)."""


def lost(view: str, generation: int, known: dict[int, int], stored: dict[int, int]) -> None:
    """Raises GenerationLost when a checkpoint this writer has seen is gone or went back:
    checkpoints only grow, so Redis lost the generation's data (restarted empty, flushed)."""
    gone = {p: (known[p], o) for p, o in stored.items() if o < known.get(p, -1)}
    if gone:
        raise GenerationLost(
            f"generation {generation} of {view} lost its checkpoints (partition: (known, stored)) {gone}"
        )


class ViewNotReady(Exception):
    """The view has no current generation yet (no projector has run)."""


class ViewRebuilding(Exception):
    """The current generation is being built from the log (first start, or Redis lost the view):
    answering from it would serve partial data."""


class ViewReads(Protocol):
    """The current generation of any view, as queries read it. Both raise ViewNotReady or
    ViewRebuilding when the view cannot answer."""

    async def row(self, view: str, key: str) -> dict[str, str] | None:
        """One hash row (None when absent), in one round trip."""
        ...

    async def read(self, view: str, *reads: Read) -> list[Any]:
        """The reads' results, in order, all from one generation."""
        ...
