"""The projector's counters in Prometheus text format."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from stream_processors.projector import Counters


def render(
    view: str,
    generation: int,
    counters: Counters,
    highwater: Callable[[int], int | None],
    legacy_frames: int = 0,
) -> str:
    labels = f'view="{view}",generation="{generation}"'
    lines = []

    def metric(name: str, kind: str, help_text: str, samples: Sequence[tuple[str, float]]) -> None:
        lines.extend([f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"])
        lines.extend(f"{name}{{{labels}{extra}}} {value}" for extra, value in samples)

    metric(
        "projector_events_applied_total", "counter", "Events applied to the view.", [("", counters.applied)]
    )
    metric(
        "projector_events_skipped_total",
        "counter",
        "Redelivered events at or below the checkpoint.",
        [("", counters.skipped)],
    )
    metric(
        "projector_dead_letters_total",
        "counter",
        "Events sent to the dead-letter topic.",
        [("", counters.dead_letters)],
    )
    metric(
        "codec_legacy_frames_total",
        "counter",
        "Frames read with the fingerprint in the reversed order of releases before the contract fix.",
        [("", legacy_frames)],
    )
    metric("projector_batches_total", "counter", "Batches written to Redis.", [("", counters.batches)])
    metric(
        "projector_last_batch_size", "gauge", "Events in the last batch.", [("", counters.last_batch_size)]
    )
    metric(
        "projector_last_batch_seconds",
        "gauge",
        "Seconds to decode, project and write the last batch.",
        [("", round(counters.last_batch_seconds, 6))],
    )
    checkpoints = sorted(counters.checkpoints.items())
    metric(
        "projector_checkpoint_offset",
        "gauge",
        "Offset of the last applied event per partition.",
        [(f',partition="{p}"', o) for p, o in checkpoints],
    )
    lags = []
    for partition, offset in checkpoints:
        high = highwater(partition)
        if high is not None:
            lags.append((f',partition="{partition}"', max(0, high - 1 - offset)))
    metric(
        "projector_lag_events",
        "gauge",
        "Records after the checkpoint per partition (upper bound: transaction markers count too).",
        lags,
    )
    return "\n".join(lines) + "\n"
