"""Composition root of the transfer process manager (the saga that moves a transfer's money):
settings, the faust app that hosts it and serves /metrics, and the transactional Kafka loop.

    python -m stream_processors.transfer_process

The flow (rules in `transfer_process_rules.py`, the loop in `transfer_process_engine.py`):
TransferRequested -> DebitAccount(source); AccountDebited -> MarkTransferDebited + CreditAccount
(target, in the source's currency), one transaction; AccountCredited -> CompleteTransfer; a refused
debit or credit -> FailTransfer(reason); TransferReversing -> CreditAccount(source, reversal) ->
RecordRefund. Every command's id is uuid5(transfer id, step) and its correlation id the transfer
id, so each step is applied once however often it is sent. The transfer aggregate holds the
transfer's state; the process adds only what it needs to decide safely, per transfer: which
account steps were answered. For that the accounts' answers (AccountDebited, AccountCredited,
refusals) are re-keyed by transfer id onto its own facts topic, so that one owner sees every
fact of a transfer in order, also with several instances: a debit that lands after its transfer
was given up is then refunded, never credited to the target.

**Why a confluent-kafka transactional loop in a faust-hosted service, not faust's own
`processing_guarantee="exactly_once"`.** Checked on faust-streaming 0.15.3 / aiokafka 0.14 against
our Kafka 4.1.1 (a probe app: consume partition p, send to partition (p+1) % 3 of another topic,
`exactly_once` on): faust's TransactionManager picks the transactional producer by the
*destination* partition, and only for topics its consumer subscribes to. Our commands go to
commands.account/commands.transfer, which the process does not consume: the probe's record was
sent with `transactional_id=None` (the plain producer, outside any transaction) and with the
explicit partition dropped (it landed on partition 2, not 1: the contract's murmur2 partition
would be lost too). Offsets are committed by the transaction of the *source* partition, so even
for a consumed destination topic the output and the offsets are in different transactions; and
faust's commit_transaction logs and swallows every exception, so a failed commit looks done.
None of that is "one transaction per hop". The loop here uses confluent-kafka as the command
processors do: begin, produce the batch's commands and re-keyed facts, send the consumed offsets
with the group's metadata (KIP-447 fencing), commit; abort and re-read on error. faust hosts it
(a service task, the web server for /metrics, signals) like the projectors.

**Stuck transfers: state kept from the log, not read from the transfers view.** The sagas of the
transfers in flight live in memory, rebuilt on every assignment by replaying events.transfer and
the process's own facts topic (account answers re-keyed by transfer id, and its give-up decisions)
up to the group's committed offsets. The Redis view was not used: it is the read side's (its
layout and generations may change under rebuilds, it answers 503 while rebuilding), it lags the
log, it does not know the account side (was the debit answered?), and a timeout decision needs
exactly that. A transfer whose pending step sees no progress for `TRANSFER_PROCESS_TIMEOUT_S` has
the step re-sent (same id); a transfer whose debit stays unanswered through
`TRANSFER_PROCESS_MAX_RETRIES` re-sends is failed `timed_out` (visible on GET /transfers/{id}); a
debit that lands after that is refunded. A debited transfer is never failed by a timeout: its
credit may still land, and a refund then would create money (see transfer_process_rules.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import tempfile
from pathlib import Path
from typing import Any

import faust
from confluent_kafka import KafkaException
from faust.app.base import BootStrategy
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from producers.engine.kafka_errors import BrokerUnreachable, error_of
from schemas.kafka_security import KafkaSecurity
from schemas.schema_log import codec_reading_the_log
from stream_processors.transfer_process_engine import LATENCY_BUCKETS_S, Config, Counters, TransferProcess
from stream_processors.transfer_process_rules import Policy
from stream_processors.worker import run_worker

log = logging.getLogger(__name__)


def _unique_instance() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class TransferProcessSettings(BaseSettings):
    """Typed settings of the transfer process, read from the environment once."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    transfer_process_group_id: str = "transfer-process"
    # Stable per instance so a restart fences its own open transaction at once; the default is
    # unique per process (always safe: a crashed one's transaction ends with its timeout).
    transfer_process_instance_id: str = Field(default_factory=_unique_instance)
    transfer_process_account_topics: str = "account"  # events.<it>, results.<it>, commands.<it>
    transfer_process_transfer_topics: str = "transfer"
    transfer_process_facts_topic: str = "transfer-process.facts"  # created on start if missing
    transfer_process_timeout_s: float = 30.0  # a step without progress this long is re-sent
    transfer_process_max_retries: int = 3  # unanswered debit re-sends before failing `timed_out`
    transfer_process_max_batch: int = 500
    transfer_process_poll_timeout_s: float = 0.05
    transfer_process_transaction_timeout_ms: int = 10_000
    transfer_process_session_timeout_ms: int = 10_000
    transfer_process_broker_wait_s: float = 600.0  # a Kafka outage longer than this: exit
    transfer_process_metrics_host: str = "127.0.0.1"
    transfer_process_metrics_port: int = 8014  # GET /metrics, /healthz
    transfer_process_log_level: str = "info"
    # Fault injection for tests only: exit between producing and committing (0: never).
    transfer_process_exit_before_commit_after: int = 0

    def config(self) -> Config:
        return Config(
            bootstrap=self.kafka_bootstrap_servers,
            group_id=self.transfer_process_group_id,
            instance_id=self.transfer_process_instance_id,
            account_topics=self.transfer_process_account_topics,
            transfer_topics=self.transfer_process_transfer_topics,
            facts_topic=self.transfer_process_facts_topic,
            policy=Policy(self.transfer_process_timeout_s, self.transfer_process_max_retries),
            max_batch=self.transfer_process_max_batch,
            poll_timeout_s=self.transfer_process_poll_timeout_s,
            transaction_timeout_ms=self.transfer_process_transaction_timeout_ms,
            session_timeout_ms=self.transfer_process_session_timeout_ms,
            broker_wait_s=self.transfer_process_broker_wait_s,
            exit_before_commit_after=self.transfer_process_exit_before_commit_after,
        )


def render(counters: Counters) -> str:
    """The process's counters in Prometheus text format."""
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.extend([f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"])
        lines.extend(f"{name}{labels} {value}" for labels, value in samples)

    notes = counters.notes
    failed = sorted((k.split(":", 1)[1], v) for k, v in notes.items() if k.startswith("failed:"))
    metric("transfer_process_started_total", "counter", "Transfers taken on.", [("", notes["started"])])
    metric("transfer_process_completed_total", "counter", "Transfers completed.", [("", notes["completed"])])
    metric(
        "transfer_process_failed_total",
        "counter",
        "Transfers failed, by reason.",
        [(f'{{reason="{reason}"}}', v) for reason, v in failed],
    )
    metric(
        "transfer_process_retried_total",
        "counter",
        "Timeouts after which a transfer's pending step was sent again (same command id).",
        [("", notes["retried"])],
    )
    metric(
        "transfer_process_timed_out_total",
        "counter",
        "Transfers failed timed_out: their debit had no answer through every re-send.",
        [("", notes["timed_out"])],
    )
    metric(
        "transfer_process_late_debits_refunded_total",
        "counter",
        "Debits that landed after their transfer timed out, refunded to the source.",
        [("", notes["late_debit_refunded"])],
    )
    metric(
        "transfer_process_refunds_refused_total",
        "counter",
        "Refunds an account refused (only the balance limit can): left for an operator.",
        [("", notes["refund_refused"])],
    )
    metric(
        "transfer_process_stuck_transfers",
        "gauge",
        "Transfers in flight whose pending step timed out at least once.",
        [("", counters.stuck)],
    )
    metric(
        "transfer_process_in_flight_transfers", "gauge", "Transfers not settled.", [("", counters.in_flight)]
    )
    metric(
        "transfer_process_commands_sent_total",
        "counter",
        "Commands sent, by step (re-sends included).",
        [(f'{{step="{step}"}}', v) for step, v in sorted(counters.sent.items())],
    )
    metric(
        "transfer_process_facts_forwarded_total",
        "counter",
        "Account answers re-keyed by transfer id onto the facts topic.",
        [("", counters.forwarded)],
    )
    metric(
        "transfer_process_undecodable_records_total",
        "counter",
        "Records that could not be read (skipped).",
        [("", counters.undecodable)],
    )
    metric(
        "transfer_process_transactions_total",
        "counter",
        "Committed transactions.",
        [("", counters.transactions)],
    )
    metric("transfer_process_aborted_total", "counter", "Aborted transactions.", [("", counters.aborted)])
    metric(
        "transfer_process_rebuild_seconds_total",
        "counter",
        "Time spent rebuilding sagas from the log on assignments.",
        [("", round(counters.rebuild_seconds, 3))],
    )
    metric(
        "transfer_process_rebuild_records_total",
        "counter",
        "Records replayed to rebuild sagas on assignments.",
        [("", counters.rebuild_records)],
    )
    name = "transfer_process_completion_seconds"
    lines.extend(
        [
            f"# HELP {name} From TransferRequested to TransferCompleted (the events' occurred_at).",
            f"# TYPE {name} histogram",
        ]
    )
    for bound, count in zip(LATENCY_BUCKETS_S, counters.latency_buckets, strict=True):
        lines.append(f'{name}_bucket{{le="{bound:g}"}} {count}')  # cumulative: seconds <= bound
    lines.append(f'{name}_bucket{{le="+Inf"}} {counters.latency_count}')
    lines.append(f"{name}_sum {round(counters.latency_sum_s, 6)}")
    lines.append(f"{name}_count {counters.latency_count}")
    return "\n".join(lines) + "\n"


class _ServeOnly(BootStrategy):
    """faust's web server, timers and signals without its Kafka clients: the loop has its own."""

    enable_kafka = False


class HostApp(faust.App):
    BootStrategy = _ServeOnly


def create_app(settings: TransferProcessSettings, process: TransferProcess) -> faust.App:
    app = HostApp(
        f"{settings.transfer_process_group_id}-host",  # no agents: faust serves and supervises only
        broker=f"kafka://{settings.kafka_bootstrap_servers.split(',')[0]}",
        broker_credentials=KafkaSecurity().faust_credentials(),  # SASL/TLS (None: PLAINTEXT)
        topic_disable_leader=True,
        web_enabled=True,
        web_bind=settings.transfer_process_metrics_host,
        web_host=settings.transfer_process_metrics_host,
        web_port=settings.transfer_process_metrics_port,
        store="memory://",
        datadir=Path(tempfile.gettempdir()) / "transfer-process-host",  # no tables: nothing kept
    )

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        return web.text(render(process.counters), content_type="text/plain; version=0.0.4")

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        ready = process.ready.is_set()
        return web.json({"ready": ready}, status=200 if ready else 503)

    @app.task  # type: ignore[untyped-decorator]
    async def run_loop() -> None:
        try:
            await asyncio.to_thread(process.run)
        except (KafkaException, BrokerUnreachable) as exc:
            # What waiting cannot fix (not authorized, Kafka away for broker_wait_s; an outage,
            # an aborted transaction or a fatal producer are handled in the loop): say why, exit.
            log.critical("transfer process cannot go on: %s; exiting", error_of(exc) or exc)
            logging.shutdown()
            os._exit(70)
        except Exception:
            log.critical("transfer process failed; exiting", exc_info=True)
            logging.shutdown()
            os._exit(70)
        if not process.stop_requested.is_set():
            os._exit(70)

    def stop_loop(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        process.stop_requested.set()  # the loop leaves the group and returns

    app.on_before_shutdown.connect(stop_loop)

    return app


def main() -> None:
    settings = TransferProcessSettings()
    logging.basicConfig(level=settings.transfer_process_log_level.upper())
    process = TransferProcess(settings.config(), codec_reading_the_log(settings.kafka_bootstrap_servers))
    app = create_app(settings, process)
    run_worker(app, settings.transfer_process_log_level)


if __name__ == "__main__":
    main()
