"""`GET /schemas/{fingerprint}`: the writer schema of any frame in the log, for readers in any
language. Released versions come with the code; versions other teams registered come from the
schemas topic (the one thing this API reads from Kafka: a schema is contract, not a view)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from confluent_kafka import KafkaException
from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel

from query_api.errors import ErrorBody
from schemas.registry import SchemaRegistry, SchemaVersion, parse_fingerprint_hex
from schemas.schema_log import SchemaLog

router = APIRouter(tags=["schemas"])


class SchemaNotFound(Exception):
    def __init__(self, fingerprint: str) -> None:
        super().__init__(f"no schema has fingerprint {fingerprint}")


class SchemasUnavailable(Exception):
    """The schemas topic could not be read, so an unknown fingerprint cannot be answered yet."""


class SchemaCatalog:
    """Released versions at once; the schemas topic read again (off the event loop) on a miss."""

    def __init__(self, bootstrap: str) -> None:
        self.registry = SchemaRegistry()
        self.log = SchemaLog(bootstrap, self.registry, timeout_s=5)

    async def refresh(self) -> None:
        try:
            await asyncio.to_thread(self.log.refresh_if_due)
        except KafkaException as exc:
            raise SchemasUnavailable(f"the schemas topic does not answer: {exc}") from None

    async def find(self, fingerprint: int) -> SchemaVersion | None:
        found = self.registry.find(fingerprint)
        if found is None:
            await self.refresh()
            found = self.registry.find(fingerprint)
        return found

    def close(self) -> None:
        self.log.close()


class SchemaSummary(BaseModel):
    fingerprint: str  # 16 hex digits, the frame's bytes in order
    name: str
    full_name: str
    version: int
    origin: Literal["released", "registered"]


class SchemaList(BaseModel):
    items: list[SchemaSummary]


Fingerprint = Annotated[
    str,
    Path(
        pattern=r"^[0-9a-fA-F]{16}$",
        description="CRC-64-AVRO fingerprint: the 8 bytes after `C3 01` in a frame, as 16 hex digits",
    ),
]
_UNAVAILABLE = {"model": ErrorBody, "description": "the schemas topic does not answer; retry"}


@router.get(
    "/schemas/{fingerprint}",
    response_class=Response,
    responses={
        200: {
            "description": "the writer schema (Avro JSON); `X-Schema-Name`/`X-Schema-Version` say which",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
        404: {"model": ErrorBody, "description": "no schema has this fingerprint"},
        422: {"model": ErrorBody, "description": "not 16 hex digits"},
        503: _UNAVAILABLE,
    },
)
async def schema(fingerprint: Fingerprint, request: Request) -> Response:
    """The schema a frame with this fingerprint was written with. It never changes, so it may be
    cached forever."""
    catalog: SchemaCatalog = request.app.state.schemas
    found = await catalog.find(parse_fingerprint_hex(fingerprint.lower()))
    if found is None:
        raise SchemaNotFound(fingerprint)
    return Response(
        found.text,
        media_type="application/json",
        headers={
            "X-Schema-Name": found.full_name,
            "X-Schema-Version": str(found.version),
            "Cache-Control": "public, max-age=31536000, immutable",
        },
    )


@router.get("/schemas", response_model=SchemaList, responses={503: _UNAVAILABLE})
async def schemas(request: Request) -> SchemaList:
    """Every schema version known: released with the code, or registered by another team."""
    catalog: SchemaCatalog = request.app.state.schemas
    await catalog.refresh()
    return SchemaList(
        items=[
            SchemaSummary(
                fingerprint=v.fingerprint_hex,
                name=v.name,
                full_name=v.full_name,
                version=v.version,
                origin=v.origin,
            )
            for v in catalog.registry.all()
        ]
    )
