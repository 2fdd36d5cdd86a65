"""The projector's composition root with injected adapters (an in-memory store, a recording restart):
the transport's resume points and commits, and following the current generation, without servers."""

from __future__ import annotations

import asyncio
import logging

import pytest
from faust.types import TP
from redis.exceptions import ConnectionError as RedisConnectionError

from producers.engine.kafka_errors import QuietLog
from schemas.codec import SingleObjectCodec
from stream_processors import layout
from stream_processors.app import Adapters, ProjectorService
from stream_processors.ops import HashSet
from stream_processors.settings import ProjectorSettings
from stream_processors.store import GenerationLost, ProjectedEvent
from stream_processors.views.registry import view_spec
from tests.support.fake_views import FakeViews, FakeViewStore


def service(views: FakeViews, generation: int, restarts: list[str], pinned: bool = False) -> ProjectorService:
    settings = ProjectorSettings(projector_generation=generation if pinned else None)
    store = FakeViewStore(views, "accounts", generation)
    adapters = Adapters(store, SingleObjectCodec(), remove_abandoned=list, restart=restarts.append)
    return ProjectorService(settings, view_spec("accounts"), generation, adapters)


def test_the_transport_resumes_after_the_checkpoints_and_records_its_commits() -> None:
    views = FakeViews()
    views.hashes[layout.checkpoints("accounts", 3)].update({"0": "41", "2": "7"})
    projector = service(views, 3, [])
    offsets = projector.app.view_offsets  # type: ignore[attr-defined]
    topic = offsets.topic
    assert topic == "events.account"
    assigned = {TP(topic, 0), TP(topic, 1), TP(topic, 2), TP("other", 0)}
    assert asyncio.run(offsets.resume_positions(assigned)) == {TP(topic, 0): 42, TP(topic, 2): 8}
    assert offsets.checkpoint(0) == 41 and offsets.checkpoint(1) is None
    asyncio.run(offsets.committed({0: 42}))
    assert views.hashes[layout.committed("accounts", 3)] == {"0": "42"}


def test_a_following_projector_goes_live_when_caught_up_and_restarts_when_current_moves() -> None:
    views, restarts = FakeViews(), list[str]()
    views.set_current("accounts", 3, {"state": "rebuilding", f"{layout.TARGET}0": "5"})
    projector = service(views, 3, restarts)

    asyncio.run(projector.report({0: 9}))
    assert views.hashes[layout.status("accounts", 3)]["lag:0"] == "9"
    assert views.hashes[layout.meta("accounts", 3)]["state"] == "rebuilding"  # not caught up yet

    views.hashes[layout.checkpoints("accounts", 3)]["0"] = "5"
    asyncio.run(projector.report({0: 0}))
    assert views.hashes[layout.meta("accounts", 3)]["state"] == "live" and not restarts

    views.set_current("accounts", 4)  # a rebuild flipped it
    asyncio.run(projector.report({}))
    assert len(restarts) == 1 and "no longer current" in restarts[0]
    assert not projector.store.serving  # no notifications from a generation nobody reads


def test_a_pinned_projector_never_restarts() -> None:
    views, restarts = FakeViews(), list[str]()
    views.set_current("accounts", 2, {"state": "live"})
    projector = service(views, 3, restarts, pinned=True)
    asyncio.run(projector.report({}))
    assert restarts == [] and not projector.store.serving


def test_metrics_count_what_the_projector_applied() -> None:
    projector = service(FakeViews(), 1, [])
    text = projector.metrics()
    assert 'projector_events_applied_total{view="accounts",generation="1"} 0' in text


def test_a_store_whose_checkpoints_vanished_writes_nothing_and_raises_generation_lost() -> None:
    views = FakeViews()
    views.hashes[layout.checkpoints("accounts", 3)].update({"0": "41"})
    store = FakeViewStore(views, "accounts", 3)
    asyncio.run(store.load_checkpoints([0, 1]))
    views.hashes.clear()  # Redis restarted empty
    with pytest.raises(GenerationLost):
        asyncio.run(store.apply([ProjectedEvent(0, 42, [HashSet("row", {"a": 1})])]))
    assert not views.hashes.get(layout.prefix("accounts", 3) + "row")
    with pytest.raises(GenerationLost):
        asyncio.run(store.load_checkpoints([0]))
    # A partition it never saw a checkpoint of is no sign of loss.
    fresh = FakeViewStore(FakeViews(), "accounts", 3)
    assert asyncio.run(fresh.apply([ProjectedEvent(1, 0, [])]))


def test_a_lost_view_restarts_the_projector_before_any_heartbeat_is_written() -> None:
    views, restarts = FakeViews(), list[str]()
    projector = service(views, 3, restarts)  # following; Redis has nothing (restarted empty)
    asyncio.run(projector.report({0: 1}))
    assert len(restarts) == 1 and layout.status("accounts", 3) not in views.hashes


def test_the_transport_waits_for_redis_to_read_the_checkpoints_and_tolerates_unrecorded_commits() -> None:
    views = FakeViews()
    views.hashes[layout.checkpoints("accounts", 3)].update({"0": "41"})
    projector = service(views, 3, [])
    store, calls = projector.store, {"n": 0}
    real = store.load_checkpoints

    async def flaky(partitions: list[int]) -> dict[int, int]:
        calls["n"] += 1
        if calls["n"] < 3:
            raise RedisConnectionError("down")
        return await real(partitions)

    async def down(offsets: dict[int, int]) -> None:
        raise RedisConnectionError("down")

    store.load_checkpoints = flaky  # type: ignore[method-assign]
    store.record_commits = down  # type: ignore[method-assign]
    offsets = projector.app.view_offsets  # type: ignore[attr-defined]
    assert asyncio.run(offsets.resume_positions({TP(offsets.topic, 0)})) == {TP(offsets.topic, 0): 42}
    assert calls["n"] == 3
    asyncio.run(offsets.committed({0: 42}))  # logged, not raised (it would crash faust's commit)


def test_repeated_kafka_client_errors_are_logged_once_per_period() -> None:
    once = QuietLog(logging.getLogger("aiokafka"), every_s=10)
    records = [logging.LogRecord("aiokafka.conn", logging.ERROR, "", 0, "Unable connect to %s", ("n1",), None)
               for _ in range(5)]  # fmt: skip
    assert [once.filter(r) for r in records] == [True, False, False, False, False]
    other = logging.LogRecord("aiokafka.conn", logging.ERROR, "", 0, "Another", (), None)
    assert once.filter(other)
