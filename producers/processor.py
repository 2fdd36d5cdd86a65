"""Composition root of a command processor: settings -> its aggregate (from the registry) -> codec
(reading unknown schemas from the log) -> the processor; SIGTERM finishes the batch and leaves. What
it cannot recover from ends it with one log line (its supervisor restarts it)."""

from __future__ import annotations

import faulthandler
import logging
import signal
import sys
import time

from confluent_kafka import KafkaException

from producers.aggregates import aggregate
from producers.engine.kafka_errors import BrokerUnreachable
from producers.engine.processor import CommandProcessor, TopicLayoutError
from producers.settings import ProcessorSettings
from schemas.codec import Codec
from schemas.schema_log import codec_reading_the_log

log = logging.getLogger(__name__)


def build(settings: ProcessorSettings | None = None, codec: Codec | None = None) -> CommandProcessor:
    settings = settings or ProcessorSettings()
    return CommandProcessor(
        settings,
        aggregate(settings.aggregate),
        codec or codec_reading_the_log(settings.kafka_bootstrap_servers),
    )


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>`: every thread's stack, to see a hang
    began = time.monotonic()
    try:
        processor = build()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: processor.stop_requested.set())
        processor.run()
    except Exception as exc:
        # Kafka's and our own known failures say enough in one line; anything else is a bug,
        # whose traceback goes with it.
        known = isinstance(exc, (KafkaException, BrokerUnreachable, TopicLayoutError))
        log.critical(
            "command processor exits after %.0fs: %s: %s; nothing uncommitted is lost (its commands "
            "are read again by the next owner)",
            time.monotonic() - began, type(exc).__name__, exc, exc_info=not known,
        )  # fmt: skip
        sys.exit(1)
    log.info("ran %.0fs", time.monotonic() - began)


if __name__ == "__main__":
    main()
