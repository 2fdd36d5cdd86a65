"""The raw HTTP baselines, each without validation, error mapping, auth or metrics:

- `query_app`: a bare Starlette endpoint doing the same Redis read as GET /accounts/{id} (one
  script: the generation pointer, then the summary hash), answering with orjson;
- `fastapi_app`: the same read as the smallest FastAPI route (context: the framework's floor);
- `command_app`: a bare Starlette endpoint accepting a deposit durably: encode the command (Avro,
  as the command API does), produce it to BENCH_TOPIC with acks=all and answer once Kafka has it.

Run by the bench as `uvicorn bench.bare:<app>`; REDIS_URL, the Kafka settings and BENCH_TOPIC
come from the environment."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import redis.asyncio as redis
from confluent_kafka import KafkaError, Message, Producer
from fastapi import FastAPI
from redis.exceptions import NoScriptError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from schemas.codec import SingleObjectCodec
from schemas.kafka_security import kafka_config

client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), max_connections=64)
READ = """
local generation = redis.call('GET', KEYS[1])
if not generation then return false end
return redis.call('HGETALL', ARGV[1] .. generation .. ARGV[2])
"""
SHA = hashlib.sha1(READ.encode()).hexdigest()


async def read(account_id: str) -> Response:
    suffix = f":account:{account_id}"
    try:
        flat = await client.evalsha(SHA, 1, "view:accounts:current", "view:accounts:g", suffix)
    except NoScriptError:
        await client.script_load(READ)
        flat = await client.evalsha(SHA, 1, "view:accounts:current", "view:accounts:g", suffix)
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


query_app = Starlette(routes=[Route("/accounts/{id}", account)])

fastapi_app = FastAPI()


@fastapi_app.get("/accounts/{account_id}")
async def fastapi_account(account_id: str) -> Response:
    return await read(account_id)


class _Producer:
    """One confluent-kafka producer, polled by a thread; each send awaits its delivery report."""

    def __init__(self) -> None:
        self.producer = Producer(
            kafka_config(
                os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
                {"linger.ms": 1, "acks": "all", "enable.idempotence": True},
            )
        )
        self.running = True
        threading.Thread(target=self._poll, daemon=True).start()

    def _poll(self) -> None:
        while self.running:
            self.producer.poll(0.05)

    async def send(self, topic: str, key: str, value: bytes) -> Message:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Message] = loop.create_future()

        def delivered(error: KafkaError | None, message: Message) -> None:
            def settle() -> None:
                if error is not None:
                    done.set_exception(RuntimeError(str(error)))
                else:
                    done.set_result(message)

            loop.call_soon_threadsafe(settle)

        self.producer.produce(topic, key=key, value=value, on_delivery=delivered)
        return await done


codec = SingleObjectCodec()
_producer: list[_Producer] = []


async def deposit(request: Request) -> Response:
    if not _producer:
        _producer.append(_Producer())
    body: dict[str, Any] = orjson.loads(await request.body())
    account_id, command_id = request.path_params["id"], str(uuid.uuid4())
    record = {
        "command_id": command_id,
        "aggregate_id": account_id,
        "expected_version": None,
        "correlation_id": command_id,
        "issued_at": datetime.now(UTC),
        "amount": int(body["amount"]),
        "reference": None,
        "channel": "bench",
    }
    message = await _producer[0].send(
        os.environ["BENCH_TOPIC"], account_id, codec.encode("DepositMoney", record)
    )
    position = f"{message.partition()}:{message.offset()}"
    return Response(
        orjson.dumps({"command_id": command_id, "position": position}),
        status_code=202,
        media_type="application/json",
    )


async def healthz(_request: Request) -> Response:
    return Response(b"ok")


command_app = Starlette(
    routes=[Route("/accounts/{id}/deposits", deposit, methods=["POST"]), Route("/healthz", healthz)]
)
