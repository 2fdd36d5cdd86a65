"""The views' Redis key layout, written down once: every writer and reader (projectors, rebuilds,
the operator CLI, the query API) builds its keys here.

Per view (all under `view:<view>:`):
- `current` -> N: the generation queries read and following projectors write;
- `generations`: the set of generations that exist;
- `recovery`: the lock of the one projector that builds a missing generation;
- `changed:<subject>`: pub/sub channel, one message per changed row after a committed batch;
- `g<N>:`: everything of generation N: its bookkeeping (`meta`, `checkpoints`, `committed`,
  `status`, `deadletters:replayed`) and the view's rows, whose keys (below, one section per view)
  are relative to that prefix.
"""

from __future__ import annotations

# --- generations --------------------------------------------------------------------------------

META = "meta"  # state (rebuilding | live | retired), reason, created_at_ms, <TARGET><partition>
TARGET = "target:"  # + partition: the last event a generation must apply before it may serve
CHECKPOINTS = "checkpoints"  # partition -> offset of the last applied event
COMMITTED = "committed"  # partition -> group offset the generation's readers committed last
STATUS = "status"  # the projector's heartbeat: <LAG><partition>, updated_at_ms
LAG = "lag:"  # + partition: records of the source partition not fetched yet
REPLAYED = "deadletters:replayed"  # source coordinates of re-driven dead letters
BOOKKEEPING = (CHECKPOINTS, COMMITTED, STATUS, META, REPLAYED)  # not view data (left out of digests)


def _view(view: str) -> str:
    return f"view:{view}:"


def current(view: str) -> str:
    return f"{_view(view)}current"


def generations(view: str) -> str:
    return f"{_view(view)}generations"


def recovery_lock(view: str) -> str:
    return f"{_view(view)}recovery"


def changes_channel(view: str, subject: str) -> str:
    return f"{_view(view)}changed:{subject}"


def changes_pattern(view: str) -> str:
    """psubscribe pattern of every row's channel; `changed_subject` gives the row back."""
    return changes_channel(view, "*")


def changed_subject(view: str, channel: str) -> str:
    return channel.removeprefix(changes_channel(view, ""))


def generation_stem(view: str) -> str:
    """`prefix(view, N)` is this + N + ':' (what the query API's one-round-trip script builds)."""
    return f"{_view(view)}g"


def prefix(view: str, generation: int) -> str:
    return f"{generation_stem(view)}{generation}:"


def scan_pattern(view: str, generation: int) -> str:
    """Every key of one generation (SCAN MATCH)."""
    return f"{prefix(view, generation)}*"


def meta(view: str, generation: int) -> str:
    return prefix(view, generation) + META


def checkpoints(view: str, generation: int) -> str:
    return prefix(view, generation) + CHECKPOINTS


def committed(view: str, generation: int) -> str:
    return prefix(view, generation) + COMMITTED


def status(view: str, generation: int) -> str:
    return prefix(view, generation) + STATUS


def replayed(view: str, generation: int) -> str:
    return prefix(view, generation) + REPLAYED


# --- rows of the accounts view (stream_processors/views/accounts.py) ----------------------------


def account(account_id: str) -> str:
    """Summary hash."""
    return f"account:{account_id}"


def transactions(account_id: str) -> str:
    """Money movements, sorted by version, each with the balance after it."""
    return f"account:{account_id}:transactions"


def account_changes(account_id: str) -> str:
    """The other changes (opened, limit changed, closed), sorted by version."""
    return f"account:{account_id}:changes"


def owner_accounts(owner_id: str) -> str:
    """Set of the owner's account ids."""
    return f"owner:{owner_id}:accounts"


def daily_prefix(day: str) -> str:
    """Daily totals of a day (YYYY-MM-DD) are this + currency: deposits, withdrawals, count."""
    return f"daily:{day}:"


def daily(day: str, currency: str) -> str:
    return daily_prefix(day) + currency


# --- rows of the transfers view (stream_processors/views/transfers.py) --------------------------


def transfer(transfer_id: str) -> str:
    return f"transfer:{transfer_id}"


# --- rows of the statements view (stream_processors/views/statements.py) ------------------------


def statement_account(account_id: str) -> str:
    """The account's currency and opening month."""
    return f"statement:{account_id}"


def statement_net(account_id: str) -> str:
    """Hash YYYY-MM -> the month's net movement (opening balances are sums of earlier months)."""
    return f"statement:{account_id}:net"


def statement_month(account_id: str, month: str) -> str:
    """Hash of one month's totals: deposits, withdrawals, transfers_in, transfers_out."""
    return f"statement:{account_id}:{month}"
