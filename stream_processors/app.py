"""Composition root of the projector: settings -> adapters (Redis store, codec, Kafka admin) ->
the service (faust app, topic, the one agent, its timers); then main() starts it."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
import redis
import redis.asyncio as aredis
from faust.types import TP

from schemas.codec import SingleObjectCodec
from schemas.kafka_security import KafkaSecurity
from schemas.schema_log import codec_reading_the_log
from schemas.topics import dead_letters_topic, events_topic
from stream_processors.generations import Generations
from stream_processors.log_admin import LogAdmin
from stream_processors.metrics import render
from stream_processors.offset_reset import rebuild_if_reset
from stream_processors.projector import DeadLetter, Projector, RawRecord
from stream_processors.recovery import ensure_generation, group_id, remove_abandoned_groups
from stream_processors.settings import ProjectorSettings
from stream_processors.store import ViewStore
from stream_processors.view_writer import ViewWriter
from stream_processors.views.base import ViewSpec
from stream_processors.views.registry import view_spec

log = logging.getLogger(__name__)


def restart_into_current(reason: str) -> None:
    """Replaces this process with a fresh start of itself (same pid, so pid files stay right),
    which picks the current generation, building one first if the view's state is gone."""
    log.warning("%s: restarting to follow the current generation", reason)
    logging.shutdown()
    os.execv(sys.executable, [sys.executable, "-m", "stream_processors.app"])


def faust_datadir() -> Path:
    """Out of the working directory: faust makes an (empty, with memory stores) folder per app."""
    folder = Path(tempfile.gettempdir()) / "cqrs-faust"
    folder.mkdir(exist_ok=True)
    return folder


class CheckpointOffsets:
    """The view's checkpoints as the transport's resume points and group offsets (read_committed.py)."""

    def __init__(self, topic: str, store: ViewStore) -> None:
        self.topic, self.store = topic, store

    async def resume_positions(self, assigned: set[TP]) -> dict[TP, int]:
        """Read on after the view's checkpoints: everything up to them is applied."""
        ours = {tp.partition: tp for tp in assigned if tp.topic == self.topic}
        done = await self.store.load_checkpoints(list(ours))
        return {ours[partition]: checkpoint + 1 for partition, checkpoint in done.items()}

    def checkpoint(self, partition: int) -> int | None:
        return self.store.known_checkpoints.get(partition)

    async def committed(self, offsets: dict[int, int]) -> None:
        await self.store.record_commits(offsets)


@dataclass
class Adapters:
    """What a projector talks to besides Kafka; tests pass fakes to ProjectorService."""

    store: ViewStore  # the generation it writes
    codec: SingleObjectCodec
    remove_abandoned: Callable[[], list[str]]  # blocking: deletes groups of abandoned generations
    restart: Callable[[str], None] = restart_into_current  # when it must follow another generation


def redis_adapters(settings: ProjectorSettings, spec: ViewSpec, generation: int) -> Adapters:
    source = settings.aggregate or spec.source

    def remove_abandoned() -> list[str]:
        gens = Generations(redis.Redis.from_url(settings.redis_url), spec.name)
        try:
            return remove_abandoned_groups(gens, LogAdmin(settings.kafka_bootstrap_servers), source)
        finally:
            gens.client.close()

    return Adapters(
        # One store for the agent and the status timer: the timer keeps its `serving` flag fresh.
        store=ViewWriter(aredis.Redis.from_url(settings.redis_url), spec.name, generation),
        codec=codec_reading_the_log(settings.kafka_bootstrap_servers),
        remove_abandoned=remove_abandoned,
    )


class ProjectorService:
    """One view generation's projector as a faust app: the agent that applies batches, the timers
    that publish its status, follow the current generation and remove abandoned groups, and
    `/metrics`. Its adapters come from settings (redis_adapters) unless a test passes them."""

    def __init__(
        self, settings: ProjectorSettings, spec: ViewSpec, generation: int, adapters: Adapters | None = None
    ) -> None:
        self.settings, self.spec, self.generation = settings, spec, generation
        self.adapters = adapters or redis_adapters(settings, spec, generation)
        self.store = self.adapters.store
        self.following = settings.projector_generation is None
        self.projector = Projector(
            spec.name, self.adapters.codec, spec.project, self.store, self.send_dead_letter
        )
        source = settings.aggregate or spec.source
        self.app = app = faust.App(
            group_id(source, spec.name, generation),  # this generation's consumer group
            broker=[f"kafka-rc://{server}" for server in settings.kafka_bootstrap_servers.split(",")],
            broker_credentials=KafkaSecurity().faust_credentials(),  # SASL/TLS (None: PLAINTEXT)
            topic_disable_leader=True,
            web_enabled=True,  # /metrics only
            web_bind=settings.projector_metrics_host,
            web_host=settings.projector_metrics_host,
            web_port=settings.projector_metrics_port,
            store="memory://",
            datadir=faust_datadir() / "{conf.name}",  # no tables: kept empty
            consumer_auto_offset_reset="earliest",
            producer_linger=0.005,
            broker_session_timeout=settings.projector_session_timeout_s,
            broker_heartbeat_interval=max(1.0, settings.projector_session_timeout_s / 5),
        )
        self.topic = app.topic(
            events_topic(source), key_serializer="raw", value_serializer="raw", internal=False
        )
        self.dead_letters = app.topic(
            dead_letters_topic(source), key_serializer="raw", value_serializer="raw", internal=False
        )
        # The transport's hooks (read_committed.py): resume after checkpoints, commit what is applied.
        app.view_offsets = CheckpointOffsets(self.topic.get_topic_name(), self.store)  # type: ignore[attr-defined]

        async def metrics(web: Any, request: Any) -> Any:
            return web.text(self.metrics(), content_type="text/plain; version=0.0.4")

        app.page("/metrics")(metrics)
        if self.following:
            app.timer(settings.projector_cleanup_interval_s)(self.remove_abandoned)
        app.timer(settings.projector_status_interval_s)(self.publish_status)
        app.agent(self.topic, concurrency=1)(self.project)

    def metrics(self) -> str:
        def highwater(partition: int) -> int | None:
            value = self.app.consumer.highwater(TP(self.topic.get_topic_name(), partition))
            return int(value) if value is not None else None

        legacy = getattr(self.adapters.codec, "legacy_frames", 0)
        return render(
            self.spec.name, self.generation, self.projector.counters, highwater, legacy_frames=legacy
        )

    async def send_dead_letter(self, letter: DeadLetter) -> None:
        sent = await self.dead_letters.send(
            key=letter.key,
            value=letter.record.value,
            partition=letter.record.partition,
            headers=letter.headers,
        )
        await sent  # acknowledged before the checkpoint moves past the poison event

    async def remove_abandoned(self) -> None:
        """Consumer groups of generations Redis no longer knows (a flip's old one, those lost with
        Redis) are deleted once they have no members."""
        try:
            for group in await asyncio.to_thread(self.adapters.remove_abandoned):
                log.info("removed the consumer group %s of an abandoned generation", group)
        except Exception as exc:  # housekeeping: never stop projecting for it
            log.warning("could not remove abandoned consumer groups: %s", exc)

    async def publish_status(self) -> None:
        try:
            lags = {}
            for tp in self.app.consumer.assignment():
                if tp.topic != self.topic.get_topic_name():
                    continue
                high, position = self.app.consumer.highwater(tp), await self.app.consumer.position(tp)
                if high is not None and position is not None:
                    lags[tp.partition] = max(0, int(high) - int(position))
            await self.report(lags)
        except Exception as exc:  # a status is informative; never stop projecting for it
            log.warning("could not publish the view status: %s", exc)

    async def report(self, lags: dict[int, int]) -> None:
        """The heartbeat; then, following the current generation: a generation being rebuilt goes
        live once its checkpoints reach its targets, and when `current` moves (a rebuild flipped
        it, or Redis lost the view) the process restarts into it."""
        await self.store.publish_status(lags, int(time.time() * 1000))
        state = await self.store.generation_state()
        self.store.serving = state.current == self.generation
        if not self.following:
            return
        if state.current != self.generation or state.meta_state is None:
            name = self.spec.name
            self.adapters.restart(f"generation {self.generation} of {name} is no longer current ({state})")
        elif state.meta_state == "rebuilding" and state.caught_up:
            await self.store.go_live()
            log.info("generation %d of %s caught up with the log: live", self.generation, self.spec.name)

    async def project(self, stream: Any) -> None:
        next_report = time.monotonic() + 10
        try:
            async for events in stream.take_events(
                self.settings.projector_batch_size, within=self.settings.projector_batch_within_s
            ):
                records = [
                    RawRecord(e.message.topic, e.message.partition, e.message.offset, e.message.value)
                    for e in events
                ]
                await self.projector.handle(records)
                await self.app.consumer.commit()  # group offsets follow what the view applied
                if time.monotonic() >= next_report:
                    next_report = time.monotonic() + 10
                    log.info("projector counters: %s", self.projector.counters)
        except Exception:
            # faust acks a batch even when the agent raises; exiting before its next commit
            # keeps every unapplied event uncommitted, to be re-read after the restart.
            log.critical("projector failed; exiting so no unapplied offset is committed", exc_info=True)
            os._exit(70)


def main() -> None:
    settings = ProjectorSettings()
    spec = view_spec(settings.projector_view)
    source = settings.aggregate or spec.source
    generation = settings.projector_generation
    if generation is None:  # following the current generation
        generation = ensure_generation(
            settings.redis_url, settings.kafka_bootstrap_servers, spec.name, source
        )
        generation = rebuild_if_reset(
            settings.redis_url,
            settings.kafka_bootstrap_servers,
            spec.name,
            source,
            generation,
            workers=settings.projector_rebuild_workers,
            log_dir=settings.stack_dir / "services" / "logs",
        )
    app = ProjectorService(settings, spec, generation).app
    worker = faust.Worker(app, loglevel=settings.projector_log_level, quiet=True)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
