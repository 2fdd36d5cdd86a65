"""Composition root of the projector: settings, faust app, topic, the one agent, Redis writer."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from typing import Any

import faust
import redis
import redis.asyncio as aredis
from faust.types import TP

from schemas.schema_log import codec_reading_the_log
from schemas.topics import dead_letters_topic, events_topic
from stream_processors.generations import Generations
from stream_processors.log_admin import LogAdmin
from stream_processors.metrics import render
from stream_processors.offset_reset import rebuild_if_reset
from stream_processors.projections.registry import ViewSpec, view_spec
from stream_processors.projector import Counters, DeadLetter, Projector, RawRecord
from stream_processors.recovery import ensure_generation, group_id, remove_abandoned_groups
from stream_processors.settings import ProjectorSettings
from stream_processors.view_writer import GenerationState, ViewWriter

log = logging.getLogger(__name__)


def restart_into_current(reason: str) -> None:
    """Replaces this process with a fresh start of itself (same pid, so pid files stay right),
    which picks the current generation, building one first if the view's state is gone."""
    log.warning("%s: restarting to follow the current generation", reason)
    logging.shutdown()
    os.execv(sys.executable, [sys.executable, "-m", "stream_processors.app"])


class CheckpointOffsets:
    """The view's checkpoints as the transport's resume points and group offsets (read_committed.py)."""

    def __init__(self, topic: str, writer: ViewWriter) -> None:
        self.topic, self.writer = topic, writer

    async def resume_positions(self, assigned: set[TP]) -> dict[TP, int]:
        """Read on after the view's checkpoints: everything up to them is applied."""
        ours = sorted((tp for tp in assigned if tp.topic == self.topic), key=lambda tp: tp.partition)
        if not ours:
            return {}
        done = await self.writer.client.hmget(self.writer.checkpoints, [str(tp.partition) for tp in ours])
        positions = {}
        for tp, cp in zip(ours, done, strict=True):
            if cp is not None:
                self.writer.known_checkpoints[tp.partition] = max(
                    int(cp), self.writer.known_checkpoints.get(tp.partition, -1)
                )
                positions[tp] = int(cp) + 1
        return positions

    def checkpoint(self, partition: int) -> int | None:
        return self.writer.known_checkpoints.get(partition)

    async def committed(self, offsets: dict[int, int]) -> None:
        await self.writer.record_commits(offsets)


def create_app(settings: ProjectorSettings, spec: ViewSpec, generation: int) -> faust.App:
    source = settings.aggregate or spec.source
    following = settings.projector_generation is None
    app = faust.App(
        group_id(source, spec.name, generation),  # this generation's consumer group
        broker=[f"kafka-rc://{server}" for server in settings.kafka_bootstrap_servers.split(",")],
        topic_disable_leader=True,
        web_enabled=True,  # /metrics only
        web_bind=settings.projector_metrics_host,
        web_host=settings.projector_metrics_host,
        web_port=settings.projector_metrics_port,
        store="memory://",
        consumer_auto_offset_reset="earliest",
        producer_linger=0.005,
        broker_session_timeout=settings.projector_session_timeout_s,
        broker_heartbeat_interval=max(1.0, settings.projector_session_timeout_s / 5),
    )
    topic = app.topic(
        events_topic(source),
        key_serializer="raw",
        value_serializer="raw",
        internal=False,
    )
    dead_letters = app.topic(
        dead_letters_topic(source), key_serializer="raw", value_serializer="raw", internal=False
    )

    async def send_dead_letter(letter: DeadLetter) -> None:
        sent = await dead_letters.send(
            key=letter.key,
            value=letter.record.value,
            partition=letter.record.partition,
            headers=letter.headers,
        )
        await sent  # acknowledged before the checkpoint moves past the poison event

    running: dict[str, Projector] = {}
    codec = codec_reading_the_log(settings.kafka_bootstrap_servers)

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        projector = running.get("projector")
        counters = projector.counters if projector else Counters()

        def highwater(partition: int) -> int | None:
            value = app.consumer.highwater(TP(topic.get_topic_name(), partition))
            return int(value) if value is not None else None

        text = render(spec.name, generation, counters, highwater, legacy_frames=codec.legacy_frames)
        return web.text(text, content_type="text/plain; version=0.0.4")

    # One writer for the agent and the status timer: the timer keeps its `serving` flag fresh.
    writer = ViewWriter(aredis.Redis.from_url(settings.redis_url), spec.name, generation)

    app.view_offsets = CheckpointOffsets(topic.get_topic_name(), writer)  # type: ignore[attr-defined]

    if following:

        @app.timer(settings.projector_cleanup_interval_s)  # type: ignore[untyped-decorator]
        async def remove_abandoned() -> None:
            """Consumer groups of generations Redis no longer knows (a flip's old one, those lost with
            Redis) are deleted once they have no members."""

            def remove() -> list[str]:
                gens = Generations(redis.Redis.from_url(settings.redis_url), spec.name)
                try:
                    return remove_abandoned_groups(gens, LogAdmin(settings.kafka_bootstrap_servers), source)
                finally:
                    gens.client.close()

            try:
                for group in await asyncio.to_thread(remove):
                    log.info("removed the consumer group %s of an abandoned generation", group)
            except Exception as exc:  # housekeeping: never stop projecting for it
                log.warning("could not remove abandoned consumer groups: %s", exc)

    @app.timer(settings.projector_status_interval_s)  # type: ignore[untyped-decorator]
    async def publish_status() -> None:
        try:
            lags = {}
            for tp in app.consumer.assignment():
                if tp.topic != topic.get_topic_name():
                    continue
                high, position = app.consumer.highwater(tp), await app.consumer.position(tp)
                if high is not None and position is not None:
                    lags[tp.partition] = max(0, int(high) - int(position))
            await writer.publish_status(lags, int(time.time() * 1000))
            state = await writer.generation_state()
            writer.serving = state.current == generation
            if following:
                await follow_current(state)
        except Exception as exc:  # a status is informative; never stop projecting for it
            log.warning("could not publish the view status: %s", exc)

    async def follow_current(state: GenerationState) -> None:
        """A following projector writes the current generation: when `current` moves (a rebuild
        flipped it, or Redis lost the view) it restarts into it; a generation being rebuilt goes
        live once its checkpoints reach its targets."""
        if state.current != generation or state.meta_state is None:
            restart_into_current(f"generation {generation} of {spec.name} is no longer current ({state})")
        if state.meta_state == "rebuilding" and state.caught_up:
            await writer.go_live()
            log.info("generation %d of %s caught up with the log: live", generation, spec.name)

    @app.agent(topic, concurrency=1)
    async def project(stream: Any) -> None:
        projector = Projector(
            spec.name,
            codec,
            spec.project,
            writer,
            send_dead_letter,
        )
        running["projector"] = projector
        next_report = time.monotonic() + 10
        try:
            async for events in stream.take_events(
                settings.projector_batch_size, within=settings.projector_batch_within_s
            ):
                records = [
                    RawRecord(e.message.topic, e.message.partition, e.message.offset, e.message.value)
                    for e in events
                ]
                await projector.handle(records)
                await app.consumer.commit()  # group offsets follow what the view applied
                if time.monotonic() >= next_report:
                    next_report = time.monotonic() + 10
                    log.info("projector counters: %s", projector.counters)
        except Exception:
            # faust acks a batch even when the agent raises; exiting before its next commit
            # keeps every unapplied event uncommitted, to be re-read after the restart.
            log.critical("projector failed; exiting so no unapplied offset is committed", exc_info=True)
            os._exit(70)

    return app


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
    app = create_app(settings, spec, generation)
    worker = faust.Worker(app, loglevel=settings.projector_log_level, quiet=True)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
