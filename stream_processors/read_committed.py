"""A faust transport (`kafka-rc://`) whose consumer reads committed records only.

faust turns on read_committed only with its own exactly-once mode, which would also wrap our
offset commits in transactions we do not need. Events come from transactional producers, so an
aborted append must never reach a view: this driver changes that one setting and nothing else.
"""

from __future__ import annotations

from typing import Any

import aiokafka
from faust.transport.drivers import aiokafka as driver


class ConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka keeps the constructor argument as-is until start(), when the fetcher reads it.
        consumer._isolation_level = "read_committed"
        return consumer


class Consumer(driver.Consumer):
    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(driver.Transport):
    Consumer = Consumer
