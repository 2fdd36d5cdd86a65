"""A faust transport (`kafka-rc://`) whose consumer reads committed records only, and resumes
where the view's own checkpoints say rather than at the group's committed offsets.

faust turns on read_committed only with its own exactly-once mode, which would also wrap our
offset commits in transactions we do not need. Events come from transactional producers, so an
aborted append must never reach a view.

faust's offset commits stop at the first gap in acknowledged offsets, and every transaction
marker is one, so they trail far behind what a view has applied; after each rebalance faust seeks
to them and re-reads (harmlessly, but slowly). An app may set `resume_positions`, an async
function from the assigned partitions to the offsets to read from; after faust's own seek, this
consumer seeks forward to those.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiokafka
from faust.transport.drivers import aiokafka as driver
from faust.types import TP


class ConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka keeps the constructor argument as-is until start(), when the fetcher reads it.
        consumer._isolation_level = "read_committed"
        return consumer


class Consumer(driver.Consumer):
    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def perform_seek(self) -> None:
        await super().perform_seek()
        positions: Callable[[set[TP]], Awaitable[dict[TP, int]]] | None = getattr(
            self.app, "resume_positions", None
        )
        if positions is not None:
            for tp, offset in (await positions(set(self.assignment()))).items():
                await self.seek(tp, offset)


class Transport(driver.Transport):
    Consumer = Consumer
