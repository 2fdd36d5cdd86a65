"""The local stack's principals and their passwords: generated once on the first `stack up`, kept in
`<STACK_DIR>/credentials.json` (mode 0600) and reused, so Kafka (SCRAM users), Redis (ACL users)
and every service the stack runs agree on them."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from schemas.kafka_security import Mechanism

# `admin` is the broker's own identity (inter-broker and controller connections, the super user);
# no service and no person uses it. The others are one per role (README, "Security").
ADMIN = "admin"
OPERATOR = "operator"
PRINCIPALS = (
    ADMIN,
    OPERATOR,
    "command-processor",
    "command-api",
    "projector",
    "transfer-process",
    "query-api",
    "other-system",
)
ROLES = PRINCIPALS[1:]  # what `cqrs stack credentials` offers and services run as

KAFKA_MECHANISM: Mechanism = "SCRAM-SHA-512"


def path(stack_dir: Path) -> Path:
    return stack_dir.resolve() / "credentials.json"


def load(stack_dir: Path) -> dict[str, str] | None:
    """principal -> password, or None when this stack has none yet."""
    try:
        return dict(json.loads(path(stack_dir).read_text()))
    except FileNotFoundError:
        return None


def ensure(stack_dir: Path) -> dict[str, str]:
    """The stack's passwords, generated for every principal that has none yet."""
    known = load(stack_dir) or {}
    missing = [p for p in PRINCIPALS if not known.get(p)]
    if missing:
        known.update({p: secrets.token_urlsafe(24) for p in missing})
        target = path(stack_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        fresh = target.with_suffix(".tmp")
        fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(known, out, indent=2)
        os.chmod(fresh, 0o600)
        fresh.replace(target)
    return known


def with_user(redis_url: str, user: str, password: str) -> str:
    """The Redis URL with this ACL user: redis://user:password@host:port/db."""
    parts = urlsplit(redis_url)
    host = parts.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def client_env(
    principal: str, password: str, redis_url: str, *, kafka: bool = True, redis: bool = True
) -> dict[str, str]:
    """What a process running as `principal` against the local stack reads (schemas.kafka_security
    and every REDIS_URL); `kafka`/`redis` False leave that server's settings out."""
    env: dict[str, str] = {}
    if kafka:
        env |= {
            "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "KAFKA_SASL_MECHANISM": KAFKA_MECHANISM,
            "KAFKA_SASL_USERNAME": principal,
            "KAFKA_SASL_PASSWORD": password,
        }
    if redis:
        env["REDIS_URL"] = with_user(redis_url, principal, password)
    return env
