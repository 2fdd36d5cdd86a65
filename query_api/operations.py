"""Operational routes: liveness, readiness, the views' generations and lag, Prometheus metrics."""

from __future__ import annotations

import time
from typing import Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel

from auth.http import authorized
from auth.tokens import OPERATOR
from query_api.errors import ErrorBody, error_response
from query_api.views import SERVED_VIEWS

router = APIRouter(tags=["operations"])


class ViewGeneration(BaseModel):
    name: str
    generation: int
    current_generation: int | None
    state: Literal["live", "rebuilding", "retired"]
    reason: str  # why it was built (first build, a rebuild, Redis lost the view)
    checkpoints: dict[str, int]  # partition -> offset of the last applied event
    lag: dict[str, int]  # partition -> records not fetched yet, as the projector last reported
    lag_total: int
    reported_ms_ago: int | None  # since the projector's last report; None = never reported


class ViewsList(BaseModel):
    items: list[ViewGeneration]


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"model": ErrorBody}})
async def readyz(request: Request) -> JSONResponse:
    """Readiness: Redis answers and every view has a live generation (not ready while Redis is
    unreachable, and after it lost the views until they are rebuilt from the log)."""
    if await request.app.state.reader.ready():
        return JSONResponse({"status": "ready"})
    return error_response(
        503,
        "not_ready",
        "Redis does not answer, or a view has no generation yet or is being rebuilt",
        **{"Retry-After": "1"},
    )


@router.get("/views", response_model=ViewsList, responses={503: {"model": ErrorBody}})
async def views(request: Request) -> ViewsList:
    """Each view generation in Redis: live (what queries read), rebuilding (a newer one catching
    up) or retired (an older one about to be removed), with checkpoints and lag. Scope operator."""
    await authorized(request, OPERATOR)
    now_ms = int(time.time() * 1000)
    items = []
    for view in SERVED_VIEWS:
        items.extend(await request.app.state.reader.generations(view, now_ms))
    return ViewsList.model_validate({"items": items})


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(request: Request) -> Response:
    """Prometheus text: requests by route and status, latency histogram, live streams,
    read-your-writes waits, change notifications received. Scope operator."""
    await authorized(request, OPERATOR)
    state = request.app.state
    feeds = state.notifications.values()
    waits: dict[str, int] = {}
    for feed in feeds:
        for outcome, count in feed.waits.items():
            waits[outcome] = waits.get(outcome, 0) + count
    text = state.metrics.render(
        streams=sum(f.streams for f in feeds), notices=sum(f.received for f in feeds), waits=waits
    )
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4")
