"""Composition root of a command processor: settings -> its aggregate (from the registry) -> codec
(reading unknown schemas from the log) -> the processor; SIGTERM finishes the batch and leaves."""

from __future__ import annotations

import logging
import signal
import time

from producers.aggregates import aggregate
from producers.engine.processor import CommandProcessor
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
    processor = build()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: processor.stop_requested.set())
    began = time.monotonic()
    processor.run()
    log.info("ran %.0fs", time.monotonic() - began)


if __name__ == "__main__":
    main()
