"""The transfer process's rules, pure: what it knows of one transfer (a saga), the facts that teach
it more, and the commands each fact or timeout asks for, under ids derived from transfer and step.

Facts about a transfer come from two places: its own events (events.transfer) and what the
accounts did about it (AccountDebited, AccountCredited, a refused account command), which the
process re-keys by transfer id so that one owner decides every step of a transfer in order.

Safety rules (a command can never be taken back once sent, only answered):
- Money leaves the source once: the debit, the credit and the refund each have one command id,
  so a re-sent step is answered from the account's idempotency memory, never applied twice.
- A transfer is given up (`timed_out`) only while no debit answer is known. A debit that lands
  after that is refunded to the source (never credited to the target).
- A debited transfer is never failed by a timeout: its credit may still land on the target, and
  refunding the source then would create money. It is re-sent (and counted stuck) until answered.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

# Fixed forever: command ids of every transfer ever started derive from it.
NAMESPACE = uuid.UUID("3f5b8c1e-6a2d-5e4f-9b70-2c1d8e7f6a50")

Step = Literal["debit", "mark-debited", "credit", "complete", "fail", "refund", "record-refund"]
ACCOUNT_STEPS: tuple[Step, ...] = ("debit", "credit", "refund")
TIMED_OUT = "timed_out"
# Answers about a delivery, not a decision on the command: the command was not applied and a
# re-send with the same id is decided normally (schemas/README.md).
DELIVERY_ANSWERS = frozenset({"idempotency_key_reused", "wrong_partition", "malformed_command"})

Outcome = Literal["accepted", "refused"]
Status = Literal["requested", "debited", "reversing", "completed", "failed"]


def command_id(transfer_id: str, step: Step) -> str:
    """The id of a transfer's step: the same on every send, so each step is applied once."""
    return str(uuid.uuid5(NAMESPACE, f"{transfer_id}:{step}"))


def account_step(transfer_id: str, sent_command_id: str) -> Step | None:
    """Which account step of `transfer_id` a command id is (None: not one of this process's)."""
    for step in ACCOUNT_STEPS:
        if command_id(transfer_id, step) == sent_command_id:
            return step
    return None


@dataclass(frozen=True)
class Send:
    """A command to send: `name` is its record name, `payload` its fields after the envelope."""

    aggregate: Literal["account", "transfer"]
    aggregate_id: str
    name: str
    payload: Mapping[str, Any]
    transfer_id: str
    step: Step
    actor: tuple[str, str | None] | None = None  # (subject, owner id) of who requested the transfer

    @property
    def command_id(self) -> str:
        return command_id(self.transfer_id, self.step)


# -- facts -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Requested:
    transfer_id: str
    from_account_id: str
    to_account_id: str
    amount: int
    occurred_at_ms: int
    actor: tuple[str, str | None] | None = None  # who requested it (TransferRequested v2 on)


@dataclass(frozen=True)
class Recorded:
    """TransferDebited, TransferCompleted or TransferFailed: the transfer aggregate's status."""

    transfer_id: str
    status: Literal["debited", "completed", "failed"]
    occurred_at_ms: int
    reason: str = ""


@dataclass(frozen=True)
class Reversing:
    transfer_id: str
    reason: str
    detail: str


@dataclass(frozen=True)
class Debited:
    transfer_id: str
    currency: str | None  # the source account's (None: an event from before AccountDebited v2)


@dataclass(frozen=True)
class Credited:
    transfer_id: str
    reversal: bool


@dataclass(frozen=True)
class Refused:
    """One of this process's account commands was rejected."""

    transfer_id: str
    step: Step
    reason: str
    detail: str


@dataclass(frozen=True)
class GaveUp:
    """This process's own decision to fail a transfer whose debit was never answered."""

    transfer_id: str
    detail: str


Fact = Requested | Recorded | Reversing | Debited | Credited | Refused | GaveUp


# -- the saga --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    timeout_s: float = 30.0  # a step without progress for this long is re-sent
    max_retries: int = 3  # re-sends of an unanswered debit before the transfer is given up


@dataclass(frozen=True)
class Saga:
    """What the process knows of one transfer. `deadline` and `retries` are this process's clock
    (not from the log): a restart gives every transfer a fresh timeout."""

    transfer_id: str
    from_account_id: str
    to_account_id: str
    amount: int
    requested_at_ms: int
    status: Status = "requested"  # as the transfer's events last said
    debit: Outcome | None = None
    currency: str | None = None
    credit: Outcome | None = None
    refund: Outcome | None = None
    failure: tuple[str, str] | None = None  # (reason, detail) of the FailTransfer this process sent
    gave_up: bool = False
    # Every step is sent on behalf of who requested the transfer: the source account's writer
    # refuses a customer's debit of an account it does not own (not_owner), and events record it.
    actor: tuple[str, str | None] | None = None
    deadline: float = field(default=0.0, compare=False)
    retries: int = field(default=0, compare=False)

    @property
    def settled(self) -> bool:
        """Nothing can happen to it any more: completed, or failed with every movement answered
        (a failed transfer whose debit is unanswered may still be debited, and must be refunded)."""
        if self.status == "completed":
            return True
        return self.status == "failed" and (
            self.debit == "refused" or (self.debit == "accepted" and self.refund == "accepted")
        )

    @property
    def refunds_late_debit(self) -> bool:
        """Debited after it was failed (given up): the money goes back, the transfer stays failed."""
        return (
            self.debit == "accepted"
            and self.status != "reversing"
            and (self.gave_up or self.status == "failed")
        )

    @property
    def stuck(self) -> bool:
        """Re-sent at least once and still not finished for its client."""
        return self.retries > 0 and self.status not in ("completed", "failed")


@dataclass(frozen=True)
class Reaction:
    saga: Saga | None  # None: forget the transfer (settled, or never known)
    sends: tuple[Send, ...] = ()
    notes: tuple[str, ...] = ()  # what happened, for counters (e.g. "timed_out", "retried")
    decision: GaveUp | None = None  # to be recorded with the sends, so a restart knows it


# -- the commands ----------------------------------------------------------------------------


def debit(s: Saga) -> Send:
    payload = {"transfer_id": s.transfer_id, "amount": s.amount, "counterparty_account_id": s.to_account_id}
    return Send("account", s.from_account_id, "DebitAccount", payload, s.transfer_id, "debit", s.actor)


def credit(s: Saga) -> Send:
    payload = {
        "transfer_id": s.transfer_id,
        "amount": s.amount,
        "counterparty_account_id": s.from_account_id,
        "reversal": False,
        "currency": s.currency,
    }
    return Send("account", s.to_account_id, "CreditAccount", payload, s.transfer_id, "credit", s.actor)


def refund(s: Saga) -> Send:
    payload = {
        "transfer_id": s.transfer_id,
        "amount": s.amount,
        "counterparty_account_id": s.to_account_id,
        "reversal": True,
        "currency": None,
    }
    return Send("account", s.from_account_id, "CreditAccount", payload, s.transfer_id, "refund", s.actor)


def _transfer(s: Saga, name: str, step: Step, payload: Mapping[str, Any] | None = None) -> Send:
    return Send("transfer", s.transfer_id, name, payload or {}, s.transfer_id, step, s.actor)


def mark_debited(s: Saga) -> Send:
    return _transfer(s, "MarkTransferDebited", "mark-debited")


def complete(s: Saga) -> Send:
    return _transfer(s, "CompleteTransfer", "complete")


def fail(s: Saga) -> Send:
    assert s.failure is not None
    reason, detail = s.failure
    return _transfer(s, "FailTransfer", "fail", {"reason": reason, "detail": detail})


def record_refund(s: Saga) -> Send:
    return _transfer(s, "RecordRefund", "record-refund")


# -- reactions -------------------------------------------------------------------------------


def _progress(s: Saga, now: float, policy: Policy) -> Saga:
    """Something was learnt: the clock of the pending step starts again."""
    return replace(s, deadline=now + policy.timeout_s, retries=0)


def _keep(s: Saga, sends: tuple[Send, ...] = (), notes: tuple[str, ...] = ()) -> Reaction:
    return Reaction(None if s.settled else s, sends, notes)


def react(saga: Saga | None, fact: Fact, now: float, policy: Policy) -> Reaction:
    """The saga after a fact and the commands the fact asks for. Learning a fact twice asks for
    nothing (facts are redelivered after crashes and rebalances)."""
    if isinstance(fact, Requested):
        if saga is not None:
            return Reaction(saga)
        s = Saga(
            fact.transfer_id,
            fact.from_account_id,
            fact.to_account_id,
            fact.amount,
            fact.occurred_at_ms,
            actor=fact.actor,
        )
        s = _progress(s, now, policy)
        return Reaction(s, (debit(s),), ("started",))
    if saga is None:
        return Reaction(None, (), ("unknown_transfer",))
    s = saga
    match fact:
        case Recorded(status="debited"):
            if s.status != "requested":
                return Reaction(s)
            return _keep(_progress(replace(s, status="debited"), now, policy))
        case Recorded(status="completed"):
            return _keep(replace(s, status="completed"), notes=("completed",))
        case Recorded(status="failed", reason=reason):
            if s.status == "failed":
                return _keep(s)
            return _keep(_progress(replace(s, status="failed"), now, policy), notes=(f"failed:{reason}",))
        case Reversing(reason=reason, detail=detail):
            if s.status == "reversing":
                return Reaction(s)
            s = _progress(replace(s, status="reversing", failure=s.failure or (reason, detail)), now, policy)
            return _keep(s, () if s.refund == "accepted" else (refund(s),))
        case Debited(currency=currency):
            if s.debit is not None:
                return Reaction(s)
            s = _progress(replace(s, debit="accepted", currency=currency or None), now, policy)
            if s.refunds_late_debit:
                return _keep(s, (refund(s),), ("late_debit_refunded",))
            return _keep(s, (mark_debited(s), credit(s)))
        case Refused(step="debit", reason=reason, detail=detail):
            if s.debit is not None:
                return Reaction(s)
            s = _progress(replace(s, debit="refused"), now, policy)
            if s.gave_up or s.status != "requested":
                return _keep(s)
            s = replace(s, failure=(reason, detail))
            return _keep(s, (fail(s),))
        case Refused(step="credit", reason=reason, detail=detail):
            if s.credit is not None:
                return Reaction(s)
            s = _progress(replace(s, credit="refused", failure=s.failure or (reason, detail)), now, policy)
            return _keep(s, (fail(s),) if s.status in ("requested", "debited") else ())
        case Refused(step="refund"):
            if s.refund is not None:
                return Reaction(s)
            # Only the balance limit can refuse a refund; no step is safe: an operator decides.
            return _keep(replace(s, refund="refused"), notes=("refund_refused",))
        case Credited(reversal=False):
            if s.credit is not None:
                return Reaction(s)
            s = _progress(replace(s, credit="accepted"), now, policy)
            return _keep(s, (complete(s),))
        case Credited(reversal=True):
            if s.refund is not None:
                return Reaction(s)
            s = _progress(replace(s, refund="accepted"), now, policy)
            return _keep(s, () if s.refunds_late_debit else (record_refund(s),))
        case GaveUp(detail=detail):
            return _keep(replace(s, gave_up=True, failure=s.failure or (TIMED_OUT, detail)))
    return Reaction(s)  # e.g. a refusal of a step that is not an account step


def pending(s: Saga) -> tuple[Send, ...]:
    """The commands that move the saga on from what it knows: re-sent when it times out."""
    if s.status == "completed":
        return ()
    if s.debit is None:
        if s.gave_up or s.status == "failed":
            # The debit is not sent again: only its first send may still land (and be refunded).
            return (fail(s),) if s.status == "requested" and s.failure else ()
        return (debit(s),)
    if s.debit == "refused":
        return (fail(s),) if s.status == "requested" and s.failure else ()
    if s.refunds_late_debit:
        late = (fail(s),) if s.status == "requested" and s.failure else ()
        return late + ((refund(s),) if s.refund is None else ())
    sends: list[Send] = []
    if s.status == "requested":
        sends.append(mark_debited(s))
    if s.credit is None:
        if s.status in ("requested", "debited"):
            sends.append(credit(s))
    elif s.credit == "accepted":
        sends.append(complete(s))
    elif s.status in ("requested", "debited"):
        sends.append(fail(s))
    elif s.status == "reversing":
        if s.refund is None:
            sends.append(refund(s))
        elif s.refund == "accepted":
            sends.append(record_refund(s))
    return tuple(sends)


def timeout(s: Saga, now: float, policy: Policy) -> Reaction:
    """A saga whose deadline passed: re-send its pending step (same ids: idempotent), or, when its
    debit stayed unanswered through `max_retries` re-sends, give the transfer up (`timed_out`)."""
    if now < s.deadline:
        return Reaction(s)
    if s.debit is None and not s.gave_up and s.status == "requested" and s.retries >= policy.max_retries:
        detail = (
            f"the debit of account {s.from_account_id} had no answer after {s.retries} re-sends, "
            f"{policy.timeout_s:g}s apart"
        )
        s = replace(s, gave_up=True, failure=(TIMED_OUT, detail), deadline=now + policy.timeout_s)
        return Reaction(s, (fail(s),), ("timed_out",), GaveUp(s.transfer_id, detail))
    sends = pending(s)
    s = replace(s, deadline=now + policy.timeout_s, retries=s.retries + 1 if sends else s.retries)
    return Reaction(s, sends, ("retried",) if sends else ())


# -- records to facts ------------------------------------------------------------------------


def transfer_fact(name: str, record: Mapping[str, Any]) -> Fact | None:
    """The fact an event of events.transfer states (None: not one this process follows)."""
    transfer_id = record["aggregate_id"]
    occurred = _millis(record["occurred_at"])
    match name:
        case "TransferRequested":
            actor = (record["actor"], record.get("actor_owner_id")) if record.get("actor") else None
            return Requested(
                transfer_id,
                record["from_account_id"],
                record["to_account_id"],
                record["amount"],
                occurred,
                actor,
            )
        case "TransferDebited":
            return Recorded(transfer_id, "debited", occurred)
        case "TransferCompleted":
            return Recorded(transfer_id, "completed", occurred)
        case "TransferFailed":
            return Recorded(transfer_id, "failed", occurred, record["reason"])
        case "TransferReversing":
            return Reversing(transfer_id, record["reason"], record["detail"])
    return None


def account_fact(name: str, record: Mapping[str, Any]) -> Fact | None:
    """The fact an account event or result states about one of this process's transfers (None:
    not about a step this process sent, or not a decision)."""
    match name:
        case "AccountDebited":
            transfer_id = record["transfer_id"]
            if record["command_id"] == command_id(transfer_id, "debit"):
                return Debited(transfer_id, record.get("currency") or None)
        case "AccountCredited":
            transfer_id = record["transfer_id"]
            step = account_step(transfer_id, record["command_id"])
            if step in ("credit", "refund"):
                return Credited(transfer_id, reversal=step == "refund")
        case "CommandResult":
            transfer_id = record["correlation_id"]
            if record["status"] != "REJECTED" or not transfer_id:
                return None
            step = account_step(transfer_id, record["command_id"])
            reason = record["reason"] or "other"
            if step is not None and reason not in DELIVERY_ANSWERS:
                return Refused(transfer_id, step, reason, record["detail"] or "")
        case "FailTransfer":  # this process's own give-up decision, as it recorded it
            if record["reason"] == TIMED_OUT and record["command_id"] == command_id(
                record["aggregate_id"], "fail"
            ):
                return GaveUp(record["aggregate_id"], record["detail"])
    return None


def _millis(value: Any) -> int:
    """timestamp-millis as fastavro reads it (an aware datetime) or as written (int)."""
    if isinstance(value, int):
        return value
    return int(value.timestamp() * 1000)
