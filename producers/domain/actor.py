"""Who asks for a command: the authenticated subject, and the owner id it acts as when it is a
customer. Commands carry their actor (in the `actor` and `actor_owner_id` headers); every event
records it, so the log answers "who did this"."""

from __future__ import annotations

from dataclasses import dataclass

from producers.domain.errors import DomainError


@dataclass(frozen=True)
class Actor:
    subject: str
    owner_id: str | None = None  # set: a customer, who may act only on what it owns

    @property
    def is_customer(self) -> bool:
        return self.owner_id is not None


class NotOwner(DomainError):
    reason = "not_owner"


class StaffOnly(DomainError):
    reason = "staff_only"
