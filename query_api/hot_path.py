"""The hot read, GET /accounts/{id}, answered without FastAPI's request machinery."""

from __future__ import annotations

import inspect
import re
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from auth.http import authorized
from auth.tokens import ACCOUNTS_READ
from query_api.routes import account_response, get_account, router

PREFIX = "/accounts/"
# Stricter than the route's parameter (AccountId): anything else goes on to FastAPI, which answers
# it, or refuses it with its own 422.
_ACCOUNT_ID = re.compile(r"[A-Za-z0-9_.-]{1,100}")


class HotAccountReads:
    """ASGI middleware, the innermost of ours (so authentication, metrics and CORS still wrap it):
    a plain GET /accounts/{id} (a valid id, no query string) is answered here with the route's own
    code, `routes.account_response`, and the app's exception handlers. Everything else, `?after=`
    included, goes on to FastAPI, where the route is declared once and documented.

    Why: with the same Redis read, routing, dependency solving (parameters and headers), the exit
    stacks and the exception middleware of FastAPI cost about half of a read's CPU (py-spy under
    wrk at 64 connections), and kept the API at 0.44x a bare Starlette endpoint."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # The declared route: its template names the request in the metrics, like FastAPI's own.
        self.route = next(r for r in router.routes if isinstance(r, APIRoute) and r.endpoint is get_account)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "GET"
            and not scope["query_string"]
            and not scope.get("root_path")
        ):
            path: str = scope["path"]
            if path.startswith(PREFIX) and _ACCOUNT_ID.fullmatch(path, len(PREFIX)):
                await self._read(scope, receive, send, path[len(PREFIX) :])
                return
        await self.app(scope, receive, send)

    async def _read(self, scope: Scope, receive: Receive, send: Send, account_id: str) -> None:
        scope["route"] = self.route
        scope["path_params"] = {"account_id": account_id}
        request = Request(scope, receive, send)
        try:
            who = await authorized(request, ACCOUNTS_READ)
            if_none_match = next((v for k, v in scope["headers"] if k == b"if-none-match"), None)
            response = await account_response(
                request.app.state.reader,
                who,
                account_id,
                if_none_match.decode("latin-1") if if_none_match is not None else None,
            )
        except Exception as exc:
            handler = _handler(request.app.exception_handlers, exc)
            if handler is None:
                raise  # to ServerErrorMiddleware, as from any route
            response = handler(request, exc)
            if inspect.isawaitable(response):
                response = await response
        await response(scope, receive, send)


def _handler(handlers: dict[Any, Any], exc: Exception) -> Any:
    """The handler the exception middleware would pick: the nearest class in the MRO (a handler of
    Exception itself belongs to the server error middleware)."""
    for cls in type(exc).__mro__:
        if cls is Exception:
            return None
        if cls in handlers:
            return handlers[cls]
    return None
