"""Bearer tokens at the HTTP edge of either API: who is calling (a middleware, before anything
else), may it (routes ask with `requires(scope)` or `await authorized(request, scope)`), and clear
401/403 bodies."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from auth.tokens import AuthError, Principal, TokenVerifier, Unauthenticated

_SCHEME = "bearer"


DOCS_PATHS = ("/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json")
QUERY_TOKEN = "stream_token"
QueryTokens = Callable[[str, str], Principal]  # (path, token) -> caller, or AuthError


class Authentication:
    """ASGI middleware: a request to anything but the open paths must carry a valid bearer token,
    or it is answered 401 before any routing or validation; the caller goes to `request.state`.
    Which scope a route needs is the route's business (`requires`, `authorized`)."""

    def __init__(
        self,
        app: ASGIApp,
        verifier: TokenVerifier,
        open_paths: Iterable[str],
        query_tokens: QueryTokens | None = None,
    ) -> None:
        self.app, self.verifier, self.query_tokens = app, verifier, query_tokens
        self.open = {*open_paths, *DOCS_PATHS}
        self.open_prefixes = tuple(p.split("{")[0] for p in self.open if "{" in p)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        # OPTIONS carries no data (CORS preflights never carry credentials): answered without one.
        if (
            scope["type"] != "http"
            or scope.get("method") == "OPTIONS"
            or path in self.open
            or path.startswith(self.open_prefixes)
        ):
            await self.app(scope, receive, send)
            return
        header = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        try:
            query_token = None if header or self.query_tokens is None else _query_token(scope)
            if query_token is not None and self.query_tokens is not None:
                who = self.query_tokens(path, query_token)
            else:
                who = await self._verify(header.decode("latin-1") if header else None)
        except AuthError as exc:
            await _auth_response(exc)(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = who
        await self.app(scope, receive, send)

    async def _verify(self, header: str | None) -> Principal:
        if not header:
            raise Unauthenticated("a bearer token is required: send `Authorization: Bearer <token>`")
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("the Authorization header must be `Bearer <token>`")
        if self.verifier.fetches_keys:
            return await run_in_threadpool(self.verifier.verify, token)
        return self.verifier.verify(token)


def _query_token(scope: Scope) -> str | None:
    """`stream_token=` of the query string (for clients that cannot send headers: EventSource)."""
    for name, value in parse_qsl(scope.get("query_string", b"").decode("latin-1")):
        if name == QUERY_TOKEN:
            return str(value)
    return None


async def authorized(request: Request, scope: str) -> Principal:
    """The caller (authenticated by the middleware), who must hold `scope`."""
    who: Principal | None = getattr(request.state, "principal", None)
    if who is None:
        raise Unauthenticated("a bearer token is required: send `Authorization: Bearer <token>`")
    return who.require(scope)


def requires(scope: str) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency giving the caller, who must hold `scope`."""

    async def caller(request: Request) -> Principal:
        return await authorized(request, scope)

    return caller


def _auth_response(exc: AuthError) -> JSONResponse:
    challenge = 'Bearer realm="cqrs"'
    if exc.status == 403:
        challenge += ', error="insufficient_scope"'
    elif "Bearer <token>" not in exc.detail:
        challenge += ', error="invalid_token"'
    return JSONResponse(
        {"error": exc.error, "detail": exc.detail},
        status_code=exc.status,
        headers={"WWW-Authenticate": challenge},
    )


async def _auth_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AuthError)
    return _auth_response(exc)


def install(
    app: FastAPI,
    verifier: TokenVerifier,
    open_paths: Iterable[str],
    query_tokens: QueryTokens | None = None,
) -> None:
    """Tokens checked on every request but `open_paths` (and the docs), and 403 bodies for routes
    that refuse a caller. `query_tokens` verifies a `stream_token` query parameter instead, when
    a request has no Authorization header."""
    app.add_middleware(
        Authentication, verifier=verifier, open_paths=tuple(open_paths), query_tokens=query_tokens
    )
    app.add_exception_handler(AuthError, _auth_error)


def document_security(document: dict[str, Any], open_paths: Iterable[str]) -> dict[str, Any]:
    """The bearer scheme, and 401 and 403 answers, on every operation but those of `open_paths`."""
    public = set(open_paths)
    components = document.setdefault("components", {})
    components.setdefault("securitySchemes", {})[_SCHEME] = {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "scopes: accounts:read, accounts:write, transfers:write, operator; a "
        "customer's token also carries its owner_id",
    }
    components.setdefault("schemas", {}).setdefault(
        "ErrorBody",
        {
            "type": "object",
            "title": "ErrorBody",
            "required": ["error", "detail"],
            "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
        },
    )
    error = {"$ref": "#/components/schemas/ErrorBody"}
    for path, operations in document.get("paths", {}).items():
        if path in public:
            continue
        for operation in operations.values():
            operation["security"] = [{_SCHEME: []}]
            responses = operation.setdefault("responses", {})
            for code, text in (("401", "no valid bearer token"), ("403", "the token may not do this")):
                responses.setdefault(
                    code, {"description": text, "content": {"application/json": {"schema": error}}}
                )
    return document
