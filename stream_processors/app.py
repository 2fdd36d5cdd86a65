"""Composition root of the projector: settings -> adapters (Redis store, codec, Kafka admin) ->
the service (faust app, topic, the one agent, its timers); then main() starts it."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
import redis
import redis.asyncio as aredis
from faust.types import TP
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from producers.engine.kafka_errors import QuietLog
from schemas.codec import SingleObjectCodec
from schemas.kafka_security import KafkaSecurity
from schemas.schema_log import codec_reading_the_log
from schemas.topics import dead_letters_topic, events_topic
from stream_processors.generations import Generations
from stream_processors.log_admin import LogAdmin
from stream_processors.metrics import render
from stream_processors.offset_reset import rebuild_if_reset
from stream_processors.projector import DeadLetter, Projector, RawRecord
from stream_processors.read_committed import FetchedBatches
from stream_processors.recovery import ensure_generation, group_id, remove_abandoned_groups
from stream_processors.settings import ProjectorSettings
from stream_processors.store import GenerationLost, ViewStore
from stream_processors.view_writer import ViewWriter
from stream_processors.views.base import ViewSpec
from stream_processors.views.registry import view_spec
from stream_processors.worker import run_worker

log = logging.getLogger(__name__)

REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)


def quiet_kafka_client_retries(seconds: float = 10.0) -> None:
    import aiokafka  # noqa: F401  (its loggers exist once its modules are imported)

    once = QuietLog(logging.getLogger("aiokafka"), every_s=seconds)
    names = [n for n in logging.root.manager.loggerDict if n == "aiokafka" or n.startswith("aiokafka.")]
    for name in names:
        logging.getLogger(name).addFilter(once)


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

    def __init__(self, topic: str, store: ViewStore, batches: FetchedBatches) -> None:
        self.topic, self.store, self.batches = topic, store, batches

    async def resume_positions(self, assigned: set[TP]) -> dict[TP, int]:
        """Read on after the view's checkpoints: everything up to them is applied. Without Redis
        there is no knowing where, so the assignment waits for it."""
        ours = {tp.partition: tp for tp in assigned if tp.topic == self.topic}
        delay = 0.1
        while True:
            try:
                done = await self.store.load_checkpoints(list(ours))
                break
            except REDIS_DOWN as exc:
                log.warning("Redis unavailable (%s): checkpoints not read; retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        return {ours[partition]: checkpoint + 1 for partition, checkpoint in done.items()}

    def checkpoint(self, partition: int) -> int | None:
        return self.store.known_checkpoints.get(partition)

    async def committed(self, offsets: dict[int, int]) -> None:
        # Only a hint for telling an operator's offset reset (recovery.operator_reset): a missed
        # record leaves an older one, which can never look like a reset.
        try:
            await self.store.record_commits(offsets)
        except REDIS_DOWN as exc:
            log.info("group offsets committed but not recorded in Redis (%s)", exc)


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

    client = aredis.Redis.from_url(
        settings.redis_url,
        # A stopped (SIGSTOP) or unreachable Redis is an error after this long, never a hang:
        # the agent logs it and retries its batch.
        socket_timeout=settings.projector_redis_timeout_s,
        socket_connect_timeout=settings.projector_redis_timeout_s,
    )
    return Adapters(
        # One store for the agent and the status timer: the timer keeps its `serving` flag fresh.
        store=ViewWriter(client, spec.name, generation),
        codec=codec_reading_the_log(settings.kafka_bootstrap_servers),
        remove_abandoned=remove_abandoned,
    )


class ProjectorService:
    """One view generation's projector as a faust app: the task that applies whole fetches, the
    timers that publish its status, follow the current generation and remove abandoned groups, and
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
            broker_max_poll_records=settings.projector_batch_size,
            consumer_max_fetch_size=settings.projector_fetch_max_bytes_per_partition,
        )
        self.topic = app.topic(
            events_topic(source), key_serializer="raw", value_serializer="raw", internal=False
        )
        self.dead_letters = app.topic(
            dead_letters_topic(source), key_serializer="raw", value_serializer="raw", internal=False
        )
        self.batches = FetchedBatches(settings.projector_prefetch_batches)
        # The transport's hooks (read_committed.py): resume after checkpoints, commit what is
        # applied, and hand whole fetches to project_fetched (no faust Event per record).
        app.view_offsets = CheckpointOffsets(self.topic.get_topic_name(), self.store, self.batches)  # type: ignore[attr-defined]

        async def metrics(web: Any, request: Any) -> Any:
            return web.text(self.metrics(), content_type="text/plain; version=0.0.4")

        app.page("/metrics")(metrics)
        if self.following:
            app.timer(settings.projector_cleanup_interval_s)(self.remove_abandoned)
        app.timer(settings.projector_status_interval_s)(self.publish_status)
        app.topics.add(self.topic)  # subscribed without an agent: its records come in bulk
        app.task(self.project_fetched)

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
        state = await self.store.generation_state()
        self.store.serving = state.current == self.generation
        if self.following and (state.current != self.generation or state.meta_state is None):
            # Before the heartbeat: a generation lost with Redis gets no new keys.
            name = self.spec.name
            self.adapters.restart(f"generation {self.generation} of {name} is no longer current ({state})")
            return
        await self.store.publish_status(lags, int(time.time() * 1000))
        if self.following and state.meta_state == "rebuilding" and state.caught_up:
            await self.store.go_live()
            log.info("generation %d of %s caught up with the log: live", self.generation, self.spec.name)

    async def project_fetched(self) -> None:
        """The projector on whole fetches (read_committed.FetchedBatches), one batch at a time."""
        fetches, inbound = self.batches, self.app.monitor.stream_inbound_time

        async def batches() -> AsyncIterator[list[RawRecord]]:
            async for taken in fetches.take(self.settings.projector_batch_size):
                now = time.monotonic()
                for fetched in taken:  # what faust's streams note, or it logs them as stuck
                    inbound.update(dict.fromkeys(fetched, now))
                yield [
                    RawRecord(tp.topic, tp.partition, record.offset, record.value)
                    for fetched in taken
                    for tp, records in fetched.items()
                    for record in records
                ]

        await self.apply_batches(batches())

    async def commit(self) -> None:
        await self.app.consumer.commit()  # group offsets follow what the view applied

    async def apply_batches(self, batches: AsyncIterator[list[RawRecord]]) -> None:
        next_report = time.monotonic() + 10
        try:
            async for records in batches:
                await self.projector.handle(records)
                await self.commit()
                if time.monotonic() >= next_report:
                    next_report = time.monotonic() + 10
                    log.info("projector counters: %s", self.projector.counters)
        except GenerationLost as exc:
            # Nothing of the batch was applied, nothing past the checkpoints committed.
            if self.following:
                self.adapters.restart(str(exc))
                return
            log.critical("%s; exiting (this projector is pinned to it)", exc)
            logging.shutdown()
            os._exit(70)
        except Exception:
            # faust acks a batch even when the agent raises; exiting before its next commit
            # keeps every unapplied event uncommitted, to be re-read after the restart.
            log.critical("projector failed; exiting so no unapplied offset is committed", exc_info=True)
            os._exit(70)


def _following(settings: ProjectorSettings, view: str, source: str) -> int:
    generation = ensure_generation(settings.redis_url, settings.kafka_bootstrap_servers, view, source)
    return rebuild_if_reset(
        settings.redis_url,
        settings.kafka_bootstrap_servers,
        view,
        source,
        generation,
        workers=settings.projector_rebuild_workers,
        log_dir=settings.stack_dir / "services" / "logs",
    )


def _when_redis_answers(step: Callable[[], int]) -> int:
    """The step, retried while Redis is unreachable (it starts over: each step is safe to redo)."""
    delay = 0.5
    while True:
        try:
            return step()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("Redis unavailable (%s) while choosing the generation; retrying in %.1fs", exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def main() -> None:
    settings = ProjectorSettings()
    spec = view_spec(settings.projector_view)
    source = settings.aggregate or spec.source
    generation = settings.projector_generation
    if generation is None:  # following the current generation
        generation = _when_redis_answers(lambda: _following(settings, spec.name, source))
    app = ProjectorService(settings, spec, generation).app
    quiet_kafka_client_retries()
    run_worker(app, settings.projector_log_level)


if __name__ == "__main__":
    main()
