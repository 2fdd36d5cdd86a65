"""Bearer tokens for tests, signed with the key the APIs under test verify with: the stack's
(`cqrs exec` exports AUTH_PUBLIC_KEY_FILE next to its signing key), or a pair made for this run."""

from __future__ import annotations

import os
import tempfile
from functools import cache
from pathlib import Path

from auth.local import PRIVATE, ensure_keys, issue
from auth.tokens import SCOPES


@cache
def signing_key() -> Path:
    public = os.environ.get("AUTH_PUBLIC_KEY_FILE")
    if public and (Path(public).parent / PRIVATE).exists():
        return Path(public).parent / PRIVATE
    private, public_path = ensure_keys(Path(tempfile.mkdtemp(prefix="cqrs-test-keys-")))
    os.environ["AUTH_PUBLIC_KEY_FILE"] = str(public_path)  # what the apps under test verify with
    return private


def token(subject: str = "test-staff", scopes: tuple[str, ...] = SCOPES, owner: str | None = None) -> str:
    return issue(signing_key(), subject, list(scopes), owner_id=owner, ttl_s=4 * 3600)


def bearer(
    subject: str = "test-staff", scopes: tuple[str, ...] = SCOPES, owner: str | None = None
) -> dict[str, str]:
    """Authorization header of a staff token with every scope, unless told otherwise."""
    return {"authorization": f"Bearer {token(subject, scopes, owner)}"}
