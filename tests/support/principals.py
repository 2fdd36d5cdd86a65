"""The local stack's role principals, for tests that act as one (a foreign system, a read-only
service) instead of as the operator the test process is."""

from __future__ import annotations

from infra import credentials
from infra.settings import StackSettings
from schemas.kafka_security import KafkaSecurity


def security_of(principal: str) -> KafkaSecurity | None:
    """The principal's Kafka settings; None when the stack has no credentials (not a local stack)."""
    passwords = credentials.load(StackSettings().stack_dir)
    if passwords is None:
        return None
    return KafkaSecurity.for_user(principal, passwords[principal], credentials.KAFKA_MECHANISM)


def password_of(principal: str) -> str | None:
    passwords = credentials.load(StackSettings().stack_dir)
    return None if passwords is None else passwords[principal]


def kafka_env(principal: str) -> dict[str, str]:
    """KAFKA_SECURITY_PROTOCOL and KAFKA_SASL_* of the principal (empty without credentials)."""
    passwords = credentials.load(StackSettings().stack_dir)
    if passwords is None:
        return {}
    env = credentials.client_env(principal, passwords[principal], "redis://unused")
    return {k: v for k, v in env.items() if k.startswith("KAFKA_")}
