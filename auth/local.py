"""A local signing key pair and tokens made with it, for `make run`, tests and trying things out.
A real deployment points AUTH_JWKS_URL at its identity provider instead."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from auth.settings import AuthSettings

PRIVATE = "signing-key.pem"
PUBLIC = "public-key.pem"


def ensure_keys(directory: Path) -> tuple[Path, Path]:
    """An ES256 (P-256) key pair in `directory`, made once; (private, public) paths."""
    private, public = directory / PRIVATE, directory / PUBLIC
    if private.exists() and public.exists():
        return private, public
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    private.touch(mode=0o600)
    private.write_bytes(pem)
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def issue(
    private_key: Path,
    subject: str,
    scopes: list[str],
    *,
    owner_id: str | None = None,
    ttl_s: int = 3600,
    settings: AuthSettings | None = None,
) -> str:
    """A signed token the APIs accept when they verify with this pair's public key."""
    settings = settings or AuthSettings()
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": settings.auth_issuer,
        "aud": settings.auth_audience,
        "sub": subject,
        "scope": " ".join(scopes),
        "iat": now,
        "nbf": now,
        "exp": now + ttl_s,
        "jti": uuid.uuid4().hex,
    }
    if owner_id:
        claims[settings.auth_owner_claim] = owner_id
    key = serialization.load_pem_private_key(private_key.read_bytes(), password=None)
    return jwt.encode(claims, key, algorithm="ES256")  # type: ignore[arg-type]
