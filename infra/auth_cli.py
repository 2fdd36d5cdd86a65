"""`cqrs auth`: the local signing key pair of a stack, and tokens made with it for trying things."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from auth.local import ensure_keys, issue
from auth.tokens import SCOPES
from infra.settings import StackSettings

auth_app = typer.Typer(help="Bearer tokens for the local stack's APIs.", no_args_is_help=True)
console = Console(soft_wrap=True, stderr=True)

ALL_SCOPES = list(SCOPES)


def keys_dir(settings: StackSettings) -> Path:
    return settings.stack_dir.resolve() / "auth"


def use_local_keys(settings: StackSettings) -> Path | None:
    """Make the stack's key pair and point the services (started from this process) at its public
    key, unless an identity provider (AUTH_JWKS_URL) or another key is configured. The signing key."""
    private, public = ensure_keys(keys_dir(settings))
    if os.environ.get("AUTH_JWKS_URL"):
        return None
    os.environ.setdefault("AUTH_PUBLIC_KEY_FILE", str(public))
    return private if os.environ["AUTH_PUBLIC_KEY_FILE"] == str(public) else None


@auth_app.command("keys")
def keys() -> None:
    """Create the stack's ES256 key pair (once) and print where it is."""
    private, public = ensure_keys(keys_dir(StackSettings()))
    print(f"signing key (keep private): {private}\npublic key (AUTH_PUBLIC_KEY_FILE): {public}")


@auth_app.command("token")
def token(
    subject: Annotated[str, typer.Option(help="who the token is for (`sub`)")],
    scope: Annotated[
        list[str] | None,
        typer.Option(help=f"repeat for several: {', '.join(SCOPES)}; default: all of them"),
    ] = None,
    owner: Annotated[
        str | None, typer.Option(help="a customer's owner id: it may then act only on its own accounts")
    ] = None,
    ttl: Annotated[int, typer.Option(help="seconds until it expires")] = 3600,
    key: Annotated[Path | None, typer.Option(help="signing key (default: the stack's)")] = None,
) -> None:
    """Print a signed token the local APIs accept (for `Authorization: Bearer ...`)."""
    scopes = scope or ALL_SCOPES
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:  # an added aggregate may name its own scopes
        console.print(
            f"[yellow]note:[/yellow] not a built-in scope: {', '.join(unknown)} ({', '.join(SCOPES)})"
        )
    signing = key or ensure_keys(keys_dir(StackSettings()))[0]
    if not signing.exists():
        console.print(f"[red]error:[/red] no signing key at {signing}")
        raise typer.Exit(2)
    print(issue(signing, subject, scopes, owner_id=owner, ttl_s=ttl))
