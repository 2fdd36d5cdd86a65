"""The transactional loop both Kafka engines run (the command processors and the transfer process):
a broker outage is waited out, a fatal or stuck producer is replaced, what no waiting fixes is raised."""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

from producers.engine.kafka_errors import (
    BoundedCalls,
    Patience,
    QuietLog,
    Stopping,
    Stuck,
    error_of,
    unrecoverable,
)

CALL_TIMEOUT_S = 10.0  # one blocking Kafka call; a longer outage is several calls, each logged
# librdkafka's first retry backoff (it doubles per retry, up to retry.backoff.max.ms, 1 s). The
# broker writes a transaction's commit markers a few ms after it answers the commit, and refuses
# the next transaction's first request (AddPartitions / AddOffsets) with CONCURRENT_TRANSACTIONS
# meanwhile: under load nearly every transaction starts in that window, and librdkafka's default
# of 100 ms put 100 ms on most commands for nothing.
RETRY_BACKOFF_MS = 5


class TransactionalLoop:
    """consume -> one Kafka transaction per turn, until `stop_requested` is set. An engine says how
    it builds its producer (`_new_producer`), joins its group (`_subscribe`), what one turn does
    (`_next_turn`), how a new group member takes over with the state reloaded (`_rejoin`), and how
    it closes (`_close_member`)."""

    producer: Producer
    consumer: Consumer

    def __init__(self, log: logging.Logger, broker_wait_s: float) -> None:
        self.log = log
        self.stop_requested = threading.Event()
        self.quiet = QuietLog(log)
        self.patience = Patience(self.quiet, self.stop_requested, broker_wait_s)
        self.bounded = BoundedCalls(CALL_TIMEOUT_S + 5)  # see Stuck
        self.abandoned: list[Producer] = []  # blocked in a call: never destroyed, only left
        self.producers_built = 0

    # -- what an engine says -------------------------------------------------------------

    def _new_producer(self) -> Producer:
        raise NotImplementedError

    def _subscribe(self) -> None:
        raise NotImplementedError

    def _next_turn(self) -> Callable[[], None] | None:
        """Called outside the guard of run() (what it raises ends run()); the turn it returns, if
        any, is called inside it (a producer that fails there is replaced)."""
        raise NotImplementedError

    def _rejoin(self) -> None:
        """A new group member in place of the current one; its assignment reloads the state."""
        raise NotImplementedError

    def _close_member(self) -> None:
        """Close the group member (it leaves the group, so its partitions move at once)."""
        raise NotImplementedError

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> None:
        """Until a stop is requested. A broker outage is waited out, an abortable transaction is
        aborted and its batch read again (the engine's turn does that), a fatal producer (or one
        stuck in a call) is replaced; raises only what waiting cannot fix (not authorized, Kafka
        away for the whole wait): the host exits."""
        try:
            self._init_transactions()
            self._subscribe()
            while not self.stop_requested.is_set():
                turn = self._next_turn()
                if turn is None:
                    continue
                try:
                    turn()
                except KafkaException as exc:
                    if unrecoverable(error_of(exc)):
                        raise
                    self._replace_producer(exc)
                except Stuck as exc:
                    self.abandoned.append(self.producer)  # destroying it under a blocked call is unsafe
                    self._replace_producer(exc)
        except Stopping as exc:
            self.log.info("stop requested while waiting for Kafka (%s)", exc)
        finally:
            # No transaction is open here: a turn always commits or aborts before returning (or
            # its producer is fatal, and its transaction is aborted by the broker).
            self._close_member()

    def _on_client_error(self, error: KafkaError) -> None:
        """librdkafka's own reports (connection lost, all brokers down ...); it reconnects by itself."""
        if error.fatal():
            self.log.error("Kafka client fatal error: %s; the producer is replaced at its next call", error)
        else:
            self.quiet.warning(f"client:{error.code()}", "Kafka client: %s; it reconnects by itself", error)

    def _transactional_producer(
        self,
        base: dict[str, Any],
        transactional_id: str,
        transaction_timeout_ms: int,
        *,
        linger_ms: float,
        retry_backoff_ms: int = RETRY_BACKOFF_MS,
    ) -> Producer:
        """A transactional producer. Every producer of an instance has the same transactional
        id: a new one fences the old one and settles (aborts) whatever transaction it left open."""
        self.producers_built += 1
        return Producer(
            {
                **base,
                "transactional.id": transactional_id,
                "transaction.timeout.ms": transaction_timeout_ms,
                "linger.ms": linger_ms,
                "retry.backoff.ms": retry_backoff_ms,
                "error_cb": self._on_client_error,
            }
        )

    # -- ending a transaction ------------------------------------------------------------

    def _commit_transaction(self) -> None:
        """A few tries: a commit that does not go through (it may have happened: the log says) is
        raised, and settled by a new producer, which waits for Kafka as long as it takes."""
        commit = self.producer.commit_transaction
        self.patience.retry(
            "committing",
            lambda: self.bounded("commit_transaction", lambda: commit(CALL_TIMEOUT_S)),
            attempts=6,
        )

    def _abort_transaction(self) -> None:
        """A few tries only: an abort that does not go through (or a fatal producer) is raised, and
        settled by a new producer, which waits for Kafka as long as it takes."""
        abort = self.producer.abort_transaction
        self.patience.retry(
            "aborting the transaction",
            lambda: self.bounded("abort_transaction", lambda: abort(CALL_TIMEOUT_S)),
            attempts=3,
        )

    # -- a fatal producer ----------------------------------------------------------------

    def _init_transactions(self) -> None:
        """init_transactions, waiting for Kafka; a producer that fails for good is replaced."""
        deadline = time.monotonic() + self.patience.wait_s
        while True:
            try:
                init = functools.partial(self.producer.init_transactions, CALL_TIMEOUT_S)
                self.patience.retry(
                    "init_transactions", functools.partial(self.bounded, "init_transactions", init)
                )
                return
            except (KafkaException, Stuck) as exc:
                error = error_of(exc)
                if unrecoverable(error) or time.monotonic() > deadline:
                    raise
                self.log.warning(
                    "init_transactions failed (%s): building another producer, trying again", error or exc
                )
                if isinstance(exc, Stuck):
                    self.abandoned.append(self.producer)
                self._drop_producer()
                if self.stop_requested.wait(1.0):
                    raise Stopping("init_transactions") from exc

    def _drop_producer(self) -> None:
        """Purge what the old producer still holds and put a new one in its place."""
        if self.producer not in self.abandoned:
            with contextlib.suppress(KafkaException, RuntimeError):  # a fatal producer may refuse even that
                self.producer.purge()
        self.producer = self._new_producer()

    def _replace_producer(self, cause: KafkaException | Stuck) -> None:
        """After a fatal producer error (or an abort that does not go through): a new producer with
        the same transactional id, which fences the old one and settles its open transaction, and
        a new group member (_rejoin), which is assigned partitions afresh: from their committed
        offsets, with their state reloaded from the log. The state in memory is merged only after a
        commit, but a commit whose answer was lost may have happened: the log says. The old member
        is not reused: while the loop waited out the outage it could not serve its rebalance, and
        such a member was seen to time out every offset fetch afterwards."""
        began = time.monotonic()
        self.log.error(
            "%s (%s): replacing the transactional producer, then rejoining the group to start over "
            "from the committed offsets with the state reloaded from the log",
            _label(cause),
            (error_of(cause) if isinstance(cause, KafkaException) else None) or cause,
        )
        self._drop_producer()
        self._init_transactions()
        self._rejoin()
        self.log.warning(
            "producer #%d ready in %.1fs; rejoining the group, whose assignment reloads the state",
            self.producers_built, time.monotonic() - began,
        )  # fmt: skip


def _label(cause: KafkaException | Stuck) -> str:
    if isinstance(cause, Stuck):
        return "producer stuck"
    error = error_of(cause)
    return "fatal producer error" if error is not None and error.fatal() else "producer call failed for good"
