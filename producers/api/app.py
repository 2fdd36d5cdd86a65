"""Composition root of the command API: settings, gateway, routes, error mapping."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from auth import http as auth_http
from auth.settings import AuthSettings
from auth.tokens import TokenVerifier
from producers.aggregates import aggregates
from producers.api import errors
from producers.api.gateway import CommandBus, CommandGateway
from producers.api.limits import BodyLimit
from producers.settings import CommandApiSettings

OPEN_PATHS = ("/healthz",)


def create_app(
    settings: CommandApiSettings | None = None,
    gateway: CommandBus | None = None,
    auth: AuthSettings | None = None,
) -> FastAPI:
    """`gateway` is for tests (a fake); by default the Kafka one is made and started."""
    settings = settings or CommandApiSettings()
    auth = auth or AuthSettings()
    verifier = TokenVerifier(auth)  # fails at start, with what to set, when it cannot verify
    served = settings.served_aggregates()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        nonlocal gateway
        gateway = gateway or CommandGateway(settings, served)
        gateway.start()
        app.state.gateway = gateway
        try:
            yield
        finally:
            gateway.close()

    app = FastAPI(
        title="Command API",
        version="0.1.0",
        lifespan=lifespan,
        description="Writes: each request becomes a command on Kafka; the answer is its outcome. "
        "Every route but /healthz needs a bearer token (JWT) with the route's scope.",
        docs_url="/docs" if auth.api_docs else None,
        redoc_url="/redoc" if auth.api_docs else None,
        openapi_url="/openapi.json" if auth.api_docs else None,
    )
    errors.install(app)
    auth_http.install(app, verifier, OPEN_PATHS)
    app.add_middleware(  # outermost: before the token is checked
        BodyLimit,
        max_bytes=settings.command_api_max_body_bytes,
        max_header_bytes=settings.command_api_max_header_bytes,
    )
    for served_aggregate in served:
        router = aggregates()[served_aggregate].router
        if router is not None:
            app.include_router(router)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            app.openapi_schema = auth_http.document_security(document, OPEN_PATHS)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    settings = CommandApiSettings()
    # Each worker is a process with its own gateway; all read every result and keep their own.
    uvicorn.run(
        "producers.api.app:create_app",
        factory=True,
        host=settings.command_api_host,
        port=settings.command_api_port,
        workers=settings.command_api_workers,
        log_level="info",
        access_log=False,
        # h11, not httptools: only h11 bounds the request line and headers (httptools takes any size)
        http="h11",
        h11_max_incomplete_event_size=settings.command_api_max_header_bytes,
    )


if __name__ == "__main__":
    main()
