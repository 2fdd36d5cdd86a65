"""Composition root of the query API: settings -> adapters (Redis pool, view reader, change
notifications, schema catalog) -> routes and error mapping."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import redis.asyncio as redis
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware

from auth import http as auth_http
from auth.settings import AuthSettings
from auth.tokens import TokenVerifier
from query_api import errors, operations, routes, schemas
from query_api.errors import error_response
from query_api.hot_path import HotAccountReads
from query_api.metrics import MetricsMiddleware, RequestMetrics
from query_api.notifications import ChangeNotifications, UnknownPartition
from query_api.settings import QueryApiSettings
from query_api.stream_tokens import StreamTokens
from query_api.views import SERVED_VIEWS, ViewReader
from stream_processors.store import ViewNotReady, ViewRebuilding


def _without_null_parameters(document: dict[str, Any]) -> dict[str, Any]:
    """An optional query parameter or header is absent, never `null`: FastAPI writes optional ones
    as `anyOf [X, null]`, which clients (and schemathesis) read as "send the text null"."""
    for path in document.get("paths", {}).values():
        for operation in path.values():
            for parameter in operation.get("parameters", []):
                schema = parameter.get("schema", {})
                branches = [b for b in schema.get("anyOf", []) if b.get("type") != "null"]
                if len(branches) == 1 and len(branches) < len(schema["anyOf"]):
                    del schema["anyOf"]
                    schema.update(branches[0])
    return document


def get_openapi_document(app: FastAPI) -> dict[str, Any]:
    return get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)


class JsonCorsMiddleware(CORSMiddleware):
    """Starlette's CORS, with a refused preflight answered in {error, detail} like every error."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
        headers.pop("content-type", None)
        detail = bytes(response.body).decode()
        return JSONResponse({"error": "cors_refused", "detail": detail}, response.status_code, headers)


@dataclass
class Adapters:
    """What the routes read from (app.state); tests may pass others to create_app."""

    reader: ViewReader  # the views (ViewReads) and their generations and readiness
    notifications: dict[str, ChangeNotifications]  # per served view: read-your-writes waits, streams
    schemas: schemas.SchemaCatalog | None  # GET /schemas (None: not served)


@asynccontextmanager
async def redis_adapters(settings: QueryApiSettings) -> AsyncIterator[Adapters]:
    # A blocking pool: under a burst, a request waits for a free connection instead of failing.
    timeout_s = settings.query_api_redis_timeout_s
    pool = redis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=timeout_s,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        # One quick retry covers a pooled connection that a restarted Redis closed; a refused
        # connection or a timeout is then a 503 at once (a timeout is never retried: that would
        # double how long a stopped Redis holds a request).
        retry=Retry(ExponentialBackoff(cap=0.1, base=0.02), 1, supported_errors=(RedisConnectionError,)),
    )
    client = redis.Redis(connection_pool=pool)
    notifications = {view: ChangeNotifications(client, view) for view in SERVED_VIEWS}
    catalog = schemas.SchemaCatalog(settings.kafka_bootstrap_servers)
    for feed in notifications.values():
        await feed.start()
    try:
        yield Adapters(ViewReader(client), notifications, catalog)
    finally:
        for feed in notifications.values():
            await feed.close()
        await client.aclose()
        catalog.close()


def _freeze_start_up_objects() -> None:
    """What start-up made lives as long as the process: out of the cyclic collector's way (once
    per process). Else each full collection walked the ~90k objects of the app and its libraries,
    about 65 ms each, a dozen in 30k reads under wrk: a tenth of the CPU, and p99 spikes (py-spy
    and gc.callbacks)."""
    if gc.get_freeze_count() == 0:
        gc.collect()
        gc.freeze()


# Open to anyone: liveness, readiness and the event contract's schemas (public, like schemas/).
OPEN_PATHS = ("/healthz", "/readyz", "/schemas", "/schemas/{fingerprint}")


def create_app(
    settings: QueryApiSettings | None = None,
    adapters: Callable[[QueryApiSettings], AbstractAsyncContextManager[Adapters]] = redis_adapters,
    auth: AuthSettings | None = None,
) -> FastAPI:
    settings = settings or QueryApiSettings()
    auth = auth or AuthSettings()
    verifier = TokenVerifier(auth)  # fails at start, with what to set, when it cannot verify
    metrics = RequestMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with adapters(settings) as wired:
            app.state.settings = settings
            app.state.metrics = metrics
            app.state.reader = wired.reader
            app.state.notifications = wired.notifications
            app.state.schemas = wired.schemas
            _freeze_start_up_objects()
            yield

    app = FastAPI(
        title="Query API",
        version="0.1.0",
        lifespan=lifespan,
        description="Reads: Redis views kept up to date from the event log. "
        "Every error is `{error, detail}` JSON. Every route but /healthz, /readyz and /schemas "
        "needs a bearer token (JWT): accounts:read for the views, operator for /views and /metrics.",
        docs_url="/docs" if auth.api_docs else None,
        redoc_url="/redoc" if auth.api_docs else None,
        openapi_url="/openapi.json" if auth.api_docs else None,
    )
    secret = settings.query_api_stream_token_secret
    stream_tokens = StreamTokens(
        secret.get_secret_value() if secret else None, settings.query_api_stream_token_ttl_s
    )
    app.state.stream_tokens = stream_tokens
    # Middlewares, innermost first: the hot read inside authentication, metrics and CORS.
    app.add_middleware(HotAccountReads)
    auth_http.install(app, verifier, OPEN_PATHS, query_tokens=stream_tokens.verify)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    if settings.cors_origins:  # outermost: a preflight is answered before anything else
        app.add_middleware(
            JsonCorsMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "HEAD", "OPTIONS"],
            allow_headers=["Authorization", "Last-Event-ID", "If-None-Match"],
            expose_headers=["ETag", "Retry-After"],
            max_age=600,
        )
    app.include_router(routes.router)
    app.include_router(operations.router)
    app.include_router(schemas.router)

    def handle(exc_type: type[Exception], status: int, code: str, **headers: str) -> None:
        async def handler(_: Request, exc: Exception) -> JSONResponse:
            return error_response(status, code, str(exc), **headers)

        app.add_exception_handler(exc_type, handler)

    handle(errors.AccountNotFound, 404, "account_not_found")
    handle(errors.TransferNotFound, 404, "transfer_not_found")
    handle(errors.StatementNotFound, 404, "statement_not_found")
    handle(schemas.SchemaNotFound, 404, "schema_not_found")
    handle(schemas.SchemasUnavailable, 503, "schemas_unavailable", **{"Retry-After": "2"})
    handle(errors.InvalidQuery, 422, "validation_error")
    handle(UnknownPartition, 422, "unknown_partition")
    handle(errors.NotYetApplied, 503, "not_yet_applied", **{"Retry-After": "1"})
    handle(errors.TooManyStreams, 503, "too_many_streams", **{"Retry-After": "5"})
    handle(ViewNotReady, 503, "view_not_ready", **{"Retry-After": "1"})
    handle(ViewRebuilding, 503, "view_rebuilding", **{"Retry-After": "2"})
    # Redis refused, gone, stopped (a timeout) or still loading its data after a restart.
    handle(RedisConnectionError, 503, "store_unavailable", **{"Retry-After": "1"})
    handle(RedisTimeoutError, 503, "store_unavailable", **{"Retry-After": "1"})

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = _without_null_parameters(get_openapi_document(app))
            app.openapi_schema = auth_http.document_security(document, OPEN_PATHS)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        """Routing's own answers (no such path, method not allowed) in the same {error, detail}."""
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), **(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return error_response(422, "validation_error", detail)

    return app


def main() -> None:
    settings = QueryApiSettings()
    if settings.query_api_workers > 1 and settings.query_api_stream_token_secret is None:
        raise SystemExit(
            "QUERY_API_WORKERS > 1 needs QUERY_API_STREAM_TOKEN_SECRET: a stream token issued by one "
            "worker must be accepted by the others"
        )
    uvicorn.run(
        "query_api.app:create_app",
        factory=True,
        host=settings.query_api_host,
        port=settings.query_api_port,
        workers=settings.query_api_workers,
        log_level="info",
        access_log=False,
    )


if __name__ == "__main__":
    main()
