"""Request size limits at the command API's edge: headers over the limit are 431; a body over it is
413 before it is read (by its Content-Length) or as soon as a chunked body passes the limit, so no
large body is held or parsed."""

from __future__ import annotations

import json

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(HTTPException):
    """Raised from `receive` while a route reads the body; FastAPI passes HTTPExceptions on."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")


class BodyLimit:
    """ASGI middleware, outermost: counts the body's bytes, whatever the framing."""

    def __init__(self, app: ASGIApp, max_bytes: int, max_header_bytes: int) -> None:
        self.app, self.max_bytes, self.max_header_bytes = app, max_bytes, max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # h11 bounds only headers that arrive in pieces; a block read at once reaches us whole.
        if sum(len(k) + len(v) + 4 for k, v in scope["headers"]) > self.max_header_bytes:
            detail = f"the request headers are larger than {self.max_header_bytes} bytes"
            await _answer(send, 431, "request_header_fields_too_large", detail)
            return
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await self._refuse(send)  # h11 refuses a malformed Content-Length before us anyway
            return
        seen, started = 0, False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise BodyTooLarge(self.max_bytes)
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except BodyTooLarge:
            if started:
                raise
            await self._refuse(send)  # read outside a route (a middleware): answered here

    async def _refuse(self, send: Send) -> None:
        await _answer(
            send, 413, "payload_too_large", f"the request body is larger than {self.max_bytes} bytes"
        )


async def _answer(send: Send, status: int, error: str, detail: str) -> None:
    body = json.dumps({"error": error, "detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),  # what else was sent on this connection is not read
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
