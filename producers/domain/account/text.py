"""What the account's free-text and code fields may hold: owner ids, references and currencies.
The decider enforces these (so commands from Kafka obey them too); the HTTP models reuse them."""

from __future__ import annotations

import re
import unicodedata

import pycountry

# An owner id names a customer in URLs (GET /owners/{owner_id}/accounts), Redis keys and tokens'
# owner_id claim: ASCII letters and digits, then also . _ @ - (e-mail addresses, UUIDs, ids of
# other systems), at most 200. No "/" or "%" (a path segment as is), no space, no control, bidi or
# look-alike characters: what a person reads is the id that is stored.
OWNER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,199}$"
_OWNER_ID = re.compile(OWNER_ID_PATTERN, re.ASCII)
MAX_REFERENCE = 200
# Unicode categories a reference may not contain: controls (Cc: NUL, newline, ESC ...), format
# characters (Cf: right-to-left overrides and isolates, zero-width), surrogates, private use,
# unassigned, and line/paragraph separators. Other text, in any script, is printable.
_UNPRINTABLE = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}
# ISO 4217 alphabetic codes as the pycountry package maintains them; a code retired from the
# standard leaves it with an update. Of the standard's X-codes, XXX ("no currency") and XTS
# ("reserved for testing") name no money an account could hold, so they are refused; the metals
# (XAU, XAG, XPT, XPD) and units such as XDR stay: metal and SDR accounts exist.
NOT_MONEY = frozenset({"XXX", "XTS"})
CURRENCIES = frozenset(c.alpha_3 for c in pycountry.currencies) - NOT_MONEY


def owner_id_problem(owner_id: str) -> str | None:
    """Why `owner_id` is not allowed, or None."""
    if _OWNER_ID.fullmatch(owner_id):
        return None
    return (
        f"owner_id {owner_id!r} must be 1 to 200 characters: an ASCII letter or digit, "
        "then letters, digits and . _ @ -"
    )


def reference_problem(reference: str) -> str | None:
    """Why `reference` is not allowed, or None: printable, trimmed, 1 to 200 characters."""
    if not reference or reference != reference.strip():
        return "reference must not be empty nor start or end with white space"
    if len(reference) > MAX_REFERENCE:
        return f"reference must be at most {MAX_REFERENCE} characters, not {len(reference)}"
    bad = next((c for c in reference if unicodedata.category(c) in _UNPRINTABLE), None)
    if bad is not None:
        return f"reference must be printable text: U+{ord(bad):04X} is not"
    return None


def currency_problem(currency: str) -> str | None:
    if currency in CURRENCIES:
        return None
    if currency in NOT_MONEY:
        return f"{currency!r} is ISO 4217's code for no currency or for testing, not a currency to hold"
    return f"{currency!r} is not an ISO 4217 currency code"
