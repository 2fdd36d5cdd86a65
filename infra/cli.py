"""`cqrs`: the one operator entry point (local stack, topics, running everything, and operating the
read side: views, offsets, dead letters)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from confluent_kafka import KafkaException
from rich.console import Console
from rich.table import Table

from infra import stack as local_stack
from infra.kafka_broker import StackError
from infra.kafka_tools import TOOLS, tool_command
from infra.operations_cli import dlq_app, offsets_app, views_app
from infra.services import ServiceRunner, services
from infra.settings import StackSettings, TopicSettings
from infra.topics import TopicMismatch, ensure_topics, publish_released_schemas
from schemas.compatibility import check_registry
from schemas.golden import write_missing
from schemas.registry import AVRO_ROOT, InvalidSchema, SchemaRegistry
from schemas.schema_log import SchemaLog, SchemaRefused
from schemas.topics import SCHEMAS_TOPIC

app = typer.Typer(help="CQRS + event sourcing on Kafka: operator commands.", no_args_is_help=True)
stack_app = typer.Typer(
    help="The local Kafka (KRaft, from Maven Central jars) and Redis.", no_args_is_help=True
)
topics_app = typer.Typer(help="Topics of the event contract.", no_args_is_help=True)
schemas_app = typer.Typer(help="The Avro schemas of the event contract.", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
app.add_typer(topics_app, name="topics")
app.add_typer(schemas_app, name="schemas")
app.add_typer(views_app, name="views")
app.add_typer(offsets_app, name="offsets")
app.add_typer(dlq_app, name="dlq")
console = Console(soft_wrap=True)


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(1)


def _up(settings: StackSettings) -> local_stack.Started:
    try:
        started = local_stack.up(settings)
    except (StackError, ValueError) as exc:
        raise _fail(str(exc)) from None
    if started.kafka:
        console.print(f"kafka started and answering metadata in {started.kafka_seconds:.1f}s")
    return started


def _print_status(settings: StackSettings) -> None:
    table = Table("server", "address", "state", "data")
    for name, address, pid, data in local_stack.status(settings):
        table.add_row(name, address, f"running (pid {pid})" if pid else "stopped", data)
    console.print(table)


@stack_app.command("up")
def stack_up() -> None:
    """Start Kafka and Redis unless running, and wait until both answer."""
    settings = StackSettings()
    _up(settings)
    _print_status(settings)


@stack_app.command("down")
def stack_down() -> None:
    """Stop the services and servers this stack started (by their pid files, never by name)."""
    settings = StackSettings()
    ServiceRunner(settings).stop_all()
    stopped = local_stack.down(settings)
    console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@stack_app.command("status")
def stack_status() -> None:
    """What runs where."""
    _print_status(StackSettings())


def _create_topics() -> None:
    try:
        reports = ensure_topics(TopicSettings())
    except TopicMismatch as exc:
        raise _fail(f"existing topics differ from the contract:\n{exc}") from None
    for r in reports:
        verb = "created" if r.created else "exists "
        console.print(f"{verb} {r.name:<20} partitions={r.partitions} cleanup.policy={r.cleanup_policy}")
    published = publish_released_schemas(TopicSettings())
    console.print(
        f"published {published} released schema versions to {SCHEMAS_TOPIC}"
        if published
        else f"{SCHEMAS_TOPIC} has every released schema version"
    )


@topics_app.command("create")
def topics_create() -> None:
    """Create the contract's topics and publish the released schemas; idempotent; fails if a topic
    differs from the contract."""
    _create_topics()


@schemas_app.command("check")
def schemas_check(
    root: Annotated[Path, typer.Option(help="folder of .avsc files")] = AVRO_ROOT,
) -> None:
    """Every new schema version must read, and be read by, every earlier one (full transitive)."""
    try:
        registry = SchemaRegistry(root)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    problems = check_registry(registry)
    for problem in problems:
        console.print(f"[red]incompatible:[/red] {problem}")
    if problems:
        raise typer.Exit(1)
    count = sum(len(registry.versions(n)) for n in registry.names())
    console.print(f"{len(registry.names())} schemas, {count} versions: all compatible")


@schemas_app.command("golden")
def schemas_golden(
    folder: Annotated[Path, typer.Option(help="where the fixtures live")] = Path("tests/golden"),
) -> None:
    """Add golden fixtures for schema versions that have none; never rewrites an existing one."""
    written = write_missing(SchemaRegistry(), folder)
    for path in written:
        console.print(f"wrote {path}")
    console.print(f"{len(written)} files written" if written else "every version has its fixture")


@schemas_app.command("register")
def schemas_register(
    file: Annotated[Path, typer.Argument(help="an .avsc file: a newer version of a command or event")],
) -> None:
    """Publish a newer, compatible version of a schema on the schemas topic, so command processors
    and projectors read records written with it (resolved into their released version) without a
    redeploy. Refused, naming the field and the rule, if it is not fully compatible with every
    known version."""
    try:
        raw = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise _fail(f"cannot read {file}: {exc}") from None
    settings = TopicSettings()
    schema_log = SchemaLog(settings.kafka_bootstrap_servers, SchemaRegistry())
    try:
        schema, new = schema_log.register(raw)
    except (SchemaRefused, InvalidSchema) as exc:
        raise _fail(f"{file} refused: {exc}") from None
    except KafkaException as exc:
        raise _fail(f"Kafka at {settings.kafka_bootstrap_servers} did not answer: {exc}") from None
    finally:
        schema_log.close()
    if new:
        console.print(
            f"registered {schema.full_name} as version {schema.version}, fingerprint {schema.fingerprint_hex}"
        )
    else:
        console.print(
            f"already known: {schema.full_name} version {schema.version} ({schema.origin}), "
            f"fingerprint {schema.fingerprint_hex}"
        )


@app.command(
    "kafka",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    no_args_is_help=True,
)
def kafka_tool(
    ctx: typer.Context,
    tool: Annotated[str, typer.Argument(help=f"one of: {', '.join(TOOLS)}")],
) -> None:
    """Run Kafka's own tool (e.g. `cqrs kafka consumer-groups --describe --group G`), with
    --bootstrap-server from KAFKA_BOOTSTRAP_SERVERS unless given."""
    settings = StackSettings()
    try:
        command = tool_command(settings, tool, list(ctx.args))
    except KeyError:
        raise _fail(f"unknown tool {tool!r}; choose one of: {', '.join(TOOLS)}") from None
    except StackError as exc:
        raise _fail(str(exc)) from None
    raise typer.Exit(subprocess.call(command))


@app.command("exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def exec_with_stack(ctx: typer.Context) -> None:
    """Run a command with the stack up and topics created; stop the stack after if it started it."""
    if not ctx.args:
        raise _fail("usage: cqrs exec -- COMMAND [ARGS...]")
    settings = StackSettings()
    started = _up(settings)
    try:
        _create_topics()
        code = subprocess.call(ctx.args)
    finally:
        local_stack.down(settings, kafka=started.kafka, redis=started.redis)
    raise typer.Exit(code)


@app.command("run")
def run(
    command_port: Annotated[int, typer.Option(envvar="COMMAND_API_PORT")] = 8001,
    query_port: Annotated[int, typer.Option(envvar="QUERY_API_PORT")] = 8002,
    projector_port: Annotated[int, typer.Option(envvar="PROJECTOR_METRICS_PORT")] = 8011,
) -> None:
    """Stack, topics and all four services; Ctrl-C stops everything this run started."""
    settings = StackSettings()
    started = _up(settings)
    runner = ServiceRunner(
        settings,
        env={
            "COMMAND_API_PORT": str(command_port),
            "QUERY_API_PORT": str(query_port),
            "PROJECTOR_METRICS_PORT": str(projector_port),
        },
    )
    stopping = False

    def on_signal(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        _create_topics()
        for service in services(command_port, query_port, projector_port):
            runner.start(service)
            runner.wait_healthy(service)
            console.print(f"started {service.name:<18} log: {runner.log_file(service)}")
        _print_ready(command_port, query_port, projector_port)
        while not stopping:
            exited = runner.exited()
            if exited:
                console.print(f"[red]{', '.join(exited)} exited[/red]; see the logs above")
                break
            time.sleep(0.5)
    except RuntimeError as exc:
        console.print(f"[red]error:[/red] {exc}")
    finally:
        console.print("stopping services ...")
        runner.stop_all(runner.started)
        stopped = local_stack.down(settings, kafka=started.kafka, redis=started.redis)
        console.print(f"stopped services{' and ' + ', '.join(stopped) if stopped else ''}")


def _print_ready(command_port: int, query_port: int, projector_port: int) -> None:
    c, q = f"http://127.0.0.1:{command_port}", f"http://127.0.0.1:{query_port}"
    console.print(f"""
[bold green]ready[/bold green]
  command API   {c}   (OpenAPI docs: {c}/docs)
  query API     {q}   (OpenAPI docs: {q}/docs)
  projectors    http://127.0.0.1:{projector_port}/metrics (accounts), :{projector_port + 1} (transfers),
                :{projector_port + 2} (statements); transfer process :{projector_port + 3}/metrics
  views         {q}/views   (generations, checkpoints, lag)

try:
  curl -s -X POST {c}/accounts -H 'content-type: application/json' \\
       -d '{{"owner_id": "alice", "currency": "EUR"}}'
  curl -s -X POST {c}/accounts/<account_id>/deposits -H 'content-type: application/json' \\
       -d '{{"amount": 1250}}'
  curl -s {q}/accounts/<account_id>
  curl -N {q}/accounts/<account_id>/stream      (live updates, server-sent events)
  curl -s -X POST {c}/transfers -H 'content-type: application/json' \\
       -d '{{"from_account_id": "<account_id>", "to_account_id": "<other>", "amount": 500}}'
  curl -s {q}/transfers/<transfer_id>            (requested, debited, completed or failed)
  cqrs kafka consumer-groups --list             (Kafka's own tools, --bootstrap-server filled in)

Ctrl-C stops everything this run started.""")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
