"""Kafka header names of the contract (values are UTF-8 text)."""

from __future__ import annotations

from typing import Any

# On a command: its command id again, so that even a command whose value cannot be decoded gets a
# result keyed by the id its sender waits for. Must equal the record's `command_id`.
COMMAND_ID_HEADER = "command_id"
# Set by a command processor when it passes a command sent to the wrong partition on to its
# aggregate's partition (value: the partition it was sent to); that partition's writer answers
# `wrong_partition`. Senders never set it.
MISROUTED_FROM_HEADER = "misrouted_from"
# On a command: who asks for it (the authenticated subject), and the owner id it acts as when it
# is a customer (who may then act only on what it owns). Every event the command causes records
# both. A command without `actor` is taken as a system's, with no owner restriction: only
# principals allowed to write commands.* can send one.
ACTOR_HEADER = "actor"
ACTOR_OWNER_ID_HEADER = "actor_owner_id"


def text_headers(msg: Any) -> dict[str, str]:
    """A Kafka record's headers as text, by name (the last one of a name wins), read in one pass."""
    return {k: v.decode(errors="replace") for k, v in msg.headers() or () if isinstance(v, bytes)}


def header(msg: Any, name: str) -> str | None:
    """A Kafka header's value as text (the last one of that name), or None."""
    return text_headers(msg).get(name)
