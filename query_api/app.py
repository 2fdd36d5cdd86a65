"""Composition root of the query API: settings, Redis pool, routes, error mapping."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as redis
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from query_api import routes
from query_api.notifications import ChangeNotifications
from query_api.settings import QueryApiSettings
from query_api.views import ACCOUNTS, ViewNotReady, ViewReader


def _error(status: int, error: str, detail: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


def create_app(settings: QueryApiSettings | None = None) -> FastAPI:
    settings = settings or QueryApiSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = redis.Redis.from_url(settings.redis_url, max_connections=settings.redis_max_connections)
        app.state.settings = settings
        app.state.reader = ViewReader(client)
        app.state.notifications = ChangeNotifications(client, ACCOUNTS)
        await app.state.notifications.start()
        try:
            yield
        finally:
            await app.state.notifications.close()
            await client.aclose()

    app = FastAPI(
        title="Query API",
        version="0.1.0",
        lifespan=lifespan,
        description="Reads: Redis views kept up to date from the event log.",
    )
    app.include_router(routes.router)

    @app.exception_handler(routes.AccountNotFound)
    async def not_found(_: Request, exc: Exception) -> JSONResponse:
        return _error(404, "account_not_found", f"no account {exc}")

    @app.exception_handler(routes.InvalidQuery)
    async def invalid_query(_: Request, exc: Exception) -> JSONResponse:
        return _error(422, "validation_error", str(exc))

    @app.exception_handler(routes.NotYetApplied)
    async def not_yet(_: Request, exc: Exception) -> JSONResponse:
        return _error(503, "not_yet_applied", str(exc), **{"Retry-After": "1"})

    @app.exception_handler(routes.TooManyStreams)
    async def too_many_streams(_: Request, exc: Exception) -> JSONResponse:
        return _error(503, "too_many_streams", str(exc), **{"Retry-After": "5"})

    @app.exception_handler(ViewNotReady)
    async def not_ready(_: Request, exc: Exception) -> JSONResponse:
        return _error(503, "view_not_ready", str(exc), **{"Retry-After": "1"})

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return _error(422, "validation_error", detail)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], responses={503: {"model": routes.ErrorBody}})
    async def readyz(request: Request) -> JSONResponse:
        """Readiness: Redis answers and the views exist."""
        if await request.app.state.reader.ready():
            return JSONResponse({"status": "ready"})
        return _error(
            503, "not_ready", "Redis does not answer or no view generation exists yet", **{"Retry-After": "1"}
        )

    return app


def main() -> None:
    settings = QueryApiSettings()
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
