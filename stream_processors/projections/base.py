"""What every projection shares: the error for an event it has no rule for, timestamps as text."""

from __future__ import annotations

from datetime import datetime


class UnknownEventType(ValueError):
    """The projection has no rule for the event; it goes to the dead letters."""


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
