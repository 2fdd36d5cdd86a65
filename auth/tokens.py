"""Bearer token verification with PyJWT: signature, expiry, issuer and audience, then the
principal (subject, scopes, and the owner id of a customer). Messages never echo the token."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization

from auth.settings import AuthSettings

# The scopes the APIs know.
ACCOUNTS_READ = "accounts:read"
ACCOUNTS_WRITE = "accounts:write"
TRANSFERS_WRITE = "transfers:write"
OPERATOR = "operator"
SCOPES = (ACCOUNTS_READ, ACCOUNTS_WRITE, TRANSFERS_WRITE, OPERATOR)


class AuthError(Exception):
    status = 401
    error = "unauthorized"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Unauthenticated(AuthError):
    """No token, or one that cannot be trusted (bad signature, expired, wrong issuer...)."""


class Forbidden(AuthError):
    """A valid token that may not do this."""

    status = 403
    error = "forbidden"


class AuthConfigError(RuntimeError):
    """The service has no way to verify tokens; the message says what to set."""


@dataclass(frozen=True)
class Principal:
    subject: str
    scopes: frozenset[str]
    owner_id: str | None = None  # set: a customer, who sees and acts on only what it owns
    expires_at: float = 0.0

    @property
    def is_customer(self) -> bool:
        return self.owner_id is not None

    def require(self, scope: str) -> Principal:
        if scope not in self.scopes:
            held = ", ".join(sorted(self.scopes)) or "none"
            raise Forbidden(f"this needs the scope {scope}; the token has: {held}")
        return self

    def require_staff(self, what: str) -> Principal:
        if self.is_customer:
            raise Forbidden(f"{what} is for staff and systems, not customers' tokens")
        return self


def _scopes(claims: dict[str, Any]) -> frozenset[str]:
    """OAuth's space-separated `scope`, or a `scp` list (Azure, Okta)."""
    scope, scp = claims.get("scope"), claims.get("scp")
    found: set[str] = set()
    if isinstance(scope, str):
        found.update(scope.split())
    if isinstance(scp, list):
        found.update(s for s in scp if isinstance(s, str))
    elif isinstance(scp, str):
        found.update(scp.split())
    return frozenset(found)


class TokenVerifier:
    def __init__(self, settings: AuthSettings) -> None:
        self.settings = settings
        self._jwks: jwt.PyJWKClient | None = None
        self._key: Any = None
        if settings.auth_jwks_url:
            self._jwks = jwt.PyJWKClient(settings.auth_jwks_url, cache_keys=True, lifespan=300, timeout=5)
        elif settings.auth_public_key_file:
            try:
                pem = settings.auth_public_key_file.read_bytes()
            except OSError as exc:
                raise AuthConfigError(f"AUTH_PUBLIC_KEY_FILE cannot be read: {exc}") from None
            try:
                self._key = serialization.load_pem_public_key(pem)
            except ValueError as exc:
                raise AuthConfigError(f"AUTH_PUBLIC_KEY_FILE is not a PEM public key: {exc}") from None
        else:
            raise AuthConfigError(
                "no way to verify bearer tokens: set AUTH_JWKS_URL (an identity provider's JWKS) or "
                "AUTH_PUBLIC_KEY_FILE (a PEM public key; `cqrs auth keys` creates a local pair)"
            )
        self._cache: dict[str, Principal] = {}

    @property
    def fetches_keys(self) -> bool:
        """Verifying may block on the identity provider (run it off the event loop)."""
        return self._jwks is not None

    def verify(self, token: str) -> Principal:
        now = time.time()
        cached = self._cache.get(token)
        if cached is not None:
            if cached.expires_at > now - self.settings.auth_leeway_s:
                return cached
            del self._cache[token]
        try:
            key = self._jwks.get_signing_key_from_jwt(token).key if self._jwks else self._key
            claims = jwt.decode(
                token,
                key,
                algorithms=self.settings.algorithms,
                audience=self.settings.auth_audience,
                issuer=self.settings.auth_issuer,
                leeway=self.settings.auth_leeway_s,
                options={"require": ["exp", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the bearer token has expired") from None
        except jwt.PyJWKClientConnectionError:
            raise Unauthenticated("the token's signing keys could not be fetched; try again") from None
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"the bearer token is not valid: {_reason(exc)}") from None
        owner = claims.get(self.settings.auth_owner_claim)
        principal = Principal(
            subject=str(claims["sub"]),
            scopes=_scopes(claims),
            owner_id=str(owner) if owner not in (None, "") else None,
            expires_at=float(claims["exp"]),
        )
        if len(self._cache) >= self.settings.auth_cache_size:
            self._cache.clear()
        self._cache[token] = principal
        return principal


def _reason(exc: Exception) -> str:
    """PyJWT's message, which names the failed check and never the token."""
    text = str(exc) or type(exc).__name__
    return text[:200]
