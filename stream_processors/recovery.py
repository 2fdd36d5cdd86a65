"""Which generation a following projector writes, and building a new one from the start of the log
when the view's state is missing from Redis: on the first start, or after Redis was flushed or
replaced. Queries answer 503 (`view_rebuilding`) until the new generation has caught up, so a
partial view is never served."""

from __future__ import annotations

import logging
import os
import time

import redis

from schemas.topics import events_topic
from stream_processors import layout
from stream_processors.generations import Generations
from stream_processors.log_admin import LogAdmin

log = logging.getLogger(__name__)


def group_id(source: str, view: str, generation: int) -> str:
    """The consumer group of one generation of a view."""
    return f"projector.{source}.{view}.g{generation}"


def used_generations(admin: LogAdmin, source: str, view: str) -> list[int]:
    """Generations that have a consumer group in Kafka (what survives a loss of Redis)."""
    prefix = group_id(source, view, 0)[:-1]
    suffixes = [group[len(prefix) :] for group in admin.groups(prefix)]
    return sorted(int(suffix) for suffix in suffixes if suffix.isdigit())


def next_generation(gens: Generations, admin: LogAdmin, source: str) -> int:
    """A number no generation of the view has used, in Redis or as a consumer group in Kafka."""
    return max([*gens.known(), *used_generations(admin, source, gens.view), 0]) + 1


def start_generation(
    gens: Generations,
    admin: LogAdmin,
    source: str,
    generation: int,
    reason: str,
    from_offsets: dict[int, int],
) -> None:
    """A new generation's consumer group starts at `from_offsets`; it must reach the log's current
    last events before it may serve."""
    topic = events_topic(source)
    targets = admin.last_event_offsets(topic)
    # A partition with no event at or after its start offset has nothing to apply: its checkpoint
    # starts at its last event (else the generation would wait for that partition for ever; and
    # never past it, else a later generation from the earliest offsets could not flip after it).
    nothing_to_apply = {p: targets[p] for p, start in from_offsets.items() if 0 <= targets.get(p, -1) < start}
    # Known in Redis first: a consumer group without a known generation is abandoned and removed.
    gens.create(generation, reason=reason, targets=targets, checkpoints=nothing_to_apply)
    admin.set_offsets(group_id(source, gens.view, generation), topic, from_offsets)


def ensure_generation(redis_url: str, bootstrap: str, view: str, source: str) -> int:
    """The current generation when it is intact, else a new one built from the earliest offsets."""
    client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
    gens = Generations(client, view)
    lock = layout.recovery_lock(view)
    try:
        while True:
            try:
                current = gens.current()
                if current is not None and gens.has_meta(current):
                    return current
                if not client.set(lock, os.getpid(), nx=True, ex=120):
                    time.sleep(0.5)  # another projector of this view is building it
                    continue
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("Redis unavailable (%s); retrying", exc)
                time.sleep(1)
                continue
            try:
                admin = LogAdmin(bootstrap)
                new = next_generation(gens, admin, source)
                if current is None and new == 1:
                    reason = "first build"
                elif current is None:
                    reason = "view state missing from Redis (flushed or replaced); rebuilt from the log"
                else:
                    reason = f"generation {current} has no metadata (lost, or made by an older version)"
                log.warning(
                    "%s view: %s -> building generation %d from the earliest offsets", view, reason, new
                )
                start_generation(gens, admin, source, new, reason, admin.earliest(events_topic(source)))
                gens.adopt(new, current)
                # Partial leftovers of the lost state: generations without metadata, known or not
                # (a projector may have written a little into its old one after Redis lost it).
                for stale in set(gens.known()) | gens.with_keys():
                    if stale != new and not gens.has_meta(stale):
                        gens.drop(stale)
                return new
            finally:
                client.delete(lock)
    finally:
        client.close()


def operator_reset(gens: Generations, admin: LogAdmin, source: str, generation: int) -> dict[int, int] | None:
    """The group's committed offsets if someone moved one of them below what this generation's
    readers committed last (an operator's reset, by `cqrs offsets reset` or Kafka's own
    `kafka-consumer-groups --reset-offsets`); else None. A crash between a batch's Redis commit
    and its offset commit leaves the group at what was recorded, or above: never a reset."""
    recorded = gens.recorded_commits(generation)
    if not recorded:
        return None
    group = admin.committed(group_id(source, gens.view, generation), events_topic(source))
    if any(p in recorded and offset < recorded[p] for p, offset in group.items()):
        return group
    return None


def describe_offsets(offsets: dict[int, int], earliest: dict[int, int]) -> str:
    if offsets == earliest:
        return "the earliest offsets"
    return ", ".join(f"{p}:{o}" for p, o in sorted(offsets.items()))


def remove_abandoned_groups(gens: Generations, admin: LogAdmin, source: str) -> list[str]:
    """Deletes the consumer groups of generations Redis no longer knows (dropped by a flip, lost
    with Redis, left by a killed rebuild). A group still with members is left for the next call."""
    known = set(gens.known())
    removed = []
    for generation in used_generations(admin, source, gens.view):
        if generation in known:
            continue
        group = group_id(source, gens.view, generation)
        if admin.members(group):
            continue
        try:
            admin.delete_group(group)
            removed.append(group)
        except Exception as exc:  # a member joined meanwhile, or the coordinator moved: next time
            log.info("consumer group %s not removed yet: %s", group, exc)
    return removed
