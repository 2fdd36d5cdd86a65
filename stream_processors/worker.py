"""Runs a faust app as this process's worker (the projector's and the transfer process's main)."""

from __future__ import annotations

import faust


def run_worker(app: faust.App, loglevel: str) -> None:
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    # faust's terminal spinner: at a log level of WARN or above it sets the root logger to DEBUG,
    # so that every record of every library turns it. aiokafka logs each broker response at DEBUG:
    # with PROJECTOR_LOG_LEVEL=warn a tenth of the projector's Python samples at 200 events/s made
    # and handled such records (py-spy). Without the spinner the level is the one asked for.
    worker.spinner = None
    worker.execute_from_commandline()
