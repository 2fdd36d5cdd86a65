"""An offset reset is a rebuild request, whichever tool made it. A following projector checks on
start whether an operator moved its generation's group offsets back; if so, it builds a new
generation from those offsets on the zero-downtime path of `cqrs views rebuild` (the old
generation serves until the new one has caught up, then they flip) and follows the new one."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import redis

from schemas.topics import events_topic
from stream_processors import layout
from stream_processors.generations import Generations
from stream_processors.log_admin import LogAdmin
from stream_processors.rebuild import Progress, Rebuilder
from stream_processors.recovery import describe_offsets, group_id, operator_reset

log = logging.getLogger(__name__)
LOCK_S = 60


def rebuild_if_reset(
    redis_url: str, bootstrap: str, view: str, source: str, generation: int, *, workers: int, log_dir: Path
) -> int:
    """The generation to follow: `generation`, or the one built from an operator's reset."""
    if not logging.getLogger().handlers:  # faust configures logging later, when its worker starts
        logging.basicConfig(
            level=logging.INFO, format="[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"
        )
    client = redis.Redis.from_url(redis_url)
    gens, admin = Generations(client, view), LogAdmin(bootstrap)
    lock = layout.recovery_lock(view)
    try:
        while not client.set(lock, os.getpid(), nx=True, ex=LOCK_S):
            time.sleep(0.5)  # another projector of this view is checking, or rebuilding
        current = gens.current() or generation
        reset = operator_reset(gens, admin, source, current)
        if reset is None:
            return current
        group = group_id(source, view, current)
        reason = (
            f"offsets of group {group} reset to "
            f"{describe_offsets(reset, admin.earliest(events_topic(source)))} by an operator"
        )
        log.warning("%s: building a new generation of %s from them while %d serves", reason, view, current)
        last_report = [0.0]

        def progress(step: Progress) -> None:
            client.expire(lock, LOCK_S)  # held while the rebuild makes progress; freed if this dies
            if time.monotonic() - last_report[0] >= 5 or step.phase != "catching up":
                last_report[0] = time.monotonic()
                log.info("%s: %s, %d of %d events (%.0f/s)", view, step.phase, step.done, step.total,
                         step.events_per_s)  # fmt: skip

        report = Rebuilder(
            view, redis_url=redis_url, bootstrap=bootstrap, log_dir=log_dir, source=source
        ).rebuild(from_offsets=reset, reason=reason, workers=workers, on_progress=progress)
        log.warning(
            "%s: generation %d (%d events in %.1fs) replaced generation %d, whose keys and group are removed",
            view, report.new, report.events, report.seconds, report.old,
        )  # fmt: skip
        return report.new
    finally:
        client.delete(lock)
        client.close()
