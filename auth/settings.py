"""Typed settings of token verification, shared by both APIs (read from the environment once)."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class AuthSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    # Where the verification keys come from: a real identity provider's JWKS, or a PEM public key
    # (`cqrs auth keys` makes a local pair; `make run` does it for you). One of them is required.
    auth_jwks_url: str | None = None
    auth_public_key_file: Path | None = None
    auth_issuer: str = "cqrs-local"  # the `iss` every token must carry
    auth_audience: str = "cqrs"  # the `aud` every token must name
    auth_algorithms: str = "ES256,RS256,EdDSA"  # asymmetric only: a public key can never sign
    auth_owner_claim: str = "owner_id"  # the claim that makes a token a customer's
    auth_leeway_s: int = 30  # clock skew tolerated on exp/nbf/iat
    auth_cache_size: int = 10_000  # verified tokens kept (until they expire) to skip re-verifying
    api_docs: bool = True  # serve /docs and /openapi.json (public when on)

    @property
    def algorithms(self) -> list[str]:
        return [a.strip() for a in self.auth_algorithms.split(",") if a.strip()]
