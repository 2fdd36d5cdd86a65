"""Stream tokens: a browser's EventSource cannot send an Authorization header, so a page asks for
a short-lived token for one account's stream (`GET /accounts/{id}/stream-token`, with its bearer
token) and opens `/accounts/{id}/stream?stream_token=...`. The token is good for that stream only,
with the caller's identity, for `QUERY_API_STREAM_TOKEN_TTL_S`; EventSource's own reconnects use it
while it lives, and a page resumes later with a new one and `?last_event_id=`."""

from __future__ import annotations

import secrets
import time

import jwt

from auth.tokens import ACCOUNTS_READ, Principal, Unauthenticated

AUDIENCE = "cqrs-stream"


class StreamTokens:
    def __init__(self, secret: str | None, ttl_s: int) -> None:
        # Random per process unless set: then only the process that issued a token accepts it.
        self._secret = secret or secrets.token_urlsafe(32)
        self.ttl_s = ttl_s

    @staticmethod
    def path(account_id: str) -> str:
        return f"/accounts/{account_id}/stream"

    def issue(self, who: Principal, account_id: str) -> str:
        claims: dict[str, object] = {
            "aud": AUDIENCE,
            "sub": who.subject,
            "path": self.path(account_id),
            "exp": int(time.time()) + self.ttl_s,
        }
        if who.owner_id is not None:
            claims["owner_id"] = who.owner_id
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def verify(self, path: str, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                audience=AUDIENCE,
                options={"require": ["exp", "sub", "path"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the stream token has expired: get a new one") from None
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"the stream token is not valid: {str(exc)[:200]}") from None
        if claims["path"] != path:
            raise Unauthenticated("this stream token is for another stream")
        owner = claims.get("owner_id")
        return Principal(str(claims["sub"]), frozenset({ACCOUNTS_READ}), owner, float(claims["exp"]))
