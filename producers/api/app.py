"""Composition root of the command API: settings, gateway, routes, error mapping."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI

from producers.aggregates import aggregates
from producers.api import errors
from producers.api.gateway import CommandBus, CommandGateway
from producers.settings import CommandApiSettings


def create_app(settings: CommandApiSettings | None = None, gateway: CommandBus | None = None) -> FastAPI:
    """`gateway` is for tests (a fake); by default the Kafka one is made and started."""
    settings = settings or CommandApiSettings()
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
        description="Writes: each request becomes a command on Kafka; the answer is its outcome.",
    )
    errors.install(app)
    for served_aggregate in served:
        router = aggregates()[served_aggregate].router
        if router is not None:
            app.include_router(router)

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
    )


if __name__ == "__main__":
    main()
