"""The group offset a projector commits: the offset after its checkpoint, past the transaction
markers and aborted records behind it once everything fetched is applied."""

from __future__ import annotations

import pytest

from stream_processors.read_committed import commit_offset


@pytest.mark.parametrize(
    ("checkpoint", "fetched", "expected"),
    [
        (None, (10, 12), None),  # data fetched, nothing applied yet: nothing to say
        (None, (-1, 2), 2),  # no checkpoint, no data: only aborted records and markers, past them
        (None, (-1, 0), 0),  # an empty partition: "nothing before 0", lag 0 for Kafka's tools
        (None, None, None),
        (41, None, 42),  # nothing known about the fetch: the offset after the checkpoint
        (41, (41, 43), 43),  # all fetched is applied; 42 is a commit marker: caught up, lag 0
        (41, (41, 42), 42),  # no marker after it yet
        (41, (45, 46), 42),  # 42..45 fetched but not applied yet: never past the checkpoint
        (-1, (-1, 3), 3),  # only markers or aborted records so far
        (50, (41, 43), 51),  # a stale fetch snapshot behind the checkpoint: the checkpoint wins
    ],
)
def test_commit_offset(checkpoint: int | None, fetched: tuple[int, int] | None, expected: int | None) -> None:
    assert commit_offset(checkpoint, fetched) == expected
