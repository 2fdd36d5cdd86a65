"""The raw baseline for query reads: a bare Starlette endpoint doing the same Redis read as
GET /accounts/{id} (one script: the generation pointer, then the summary hash) and answering
with orjson; no validation, no error mapping, no metrics.

Run by bench/query_http.py as `uvicorn bench.bare_query:app` (and `:fastapi_app`); REDIS_URL names
the server."""

from __future__ import annotations

import hashlib
import os

import orjson
import redis.asyncio as redis
from fastapi import FastAPI
from redis.exceptions import NoScriptError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

client = redis.Redis.from_url(os.environ["REDIS_URL"], max_connections=64)
READ = """
local generation = redis.call('GET', KEYS[1])
if not generation then return false end
return redis.call('HGETALL', ARGV[1] .. generation .. ARGV[2])
"""
SHA = hashlib.sha1(READ.encode()).hexdigest()


async def read(account_id: str) -> Response:
    suffix = f":account:{account_id}"
    try:
        flat = await client.evalsha(SHA, 1, "view:accounts:current", "view:accounts:g", suffix)  # type: ignore[misc]
    except NoScriptError:
        await client.script_load(READ)
        flat = await client.evalsha(SHA, 1, "view:accounts:current", "view:accounts:g", suffix)  # type: ignore[misc]
    if not flat:
        return Response(b'{"error":"account_not_found"}', status_code=404, media_type="application/json")
    body = {k.decode(): v.decode() for k, v in zip(flat[::2], flat[1::2], strict=True)}
    for name in ("balance", "overdraft_limit", "version"):
        body[name] = int(body[name])
    return Response(
        orjson.dumps(body), media_type="application/json", headers={"ETag": f'"{body["version"]}"'}
    )


async def account(request: Request) -> Response:
    return await read(request.path_params["id"])


app = Starlette(routes=[Route("/accounts/{id}", account)])

# For context, not a baseline: the same read as the smallest FastAPI route (one str parameter, no
# validation rules, no middleware of ours), i.e. the framework's own floor.
fastapi_app = FastAPI()


@fastapi_app.get("/accounts/{account_id}")
async def fastapi_account(account_id: str) -> Response:
    return await read(account_id)
