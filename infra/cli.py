"""`cqrs`: the one operator entry point (local stack, topics, running everything, and operating the
read side: views, offsets, dead letters)."""

from __future__ import annotations

import json
import os
import shlex
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

from auth.local import issue
from infra import credentials, processes
from infra import stack as local_stack
from infra.access import kafka_problem
from infra.auth_cli import ALL_SCOPES, auth_app, use_local_keys
from infra.gateway import Gateway
from infra.kafka_broker import KafkaCluster, StackError
from infra.kafka_tools import TOOLS, run_tool
from infra.operations_cli import dlq_app, offsets_app, views_app
from infra.processes import Supervised
from infra.redis_server import RedisServer, acl_users
from infra.services import ServiceRunner, services
from infra.settings import StackSettings, TopicSettings
from infra.supervisor import Supervisor
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
app.add_typer(auth_app, name="auth")
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
        what = "kafka" if settings.kafka_brokers == 1 else f"kafka ({settings.kafka_brokers} brokers)"
        console.print(f"{what} started and answering metadata in {started.kafka_seconds:.1f}s")
    if settings.kafka_brokers > 1:  # what this process and its children connect to: every node
        os.environ["KAFKA_BOOTSTRAP_SERVERS"] = settings.bootstrap_servers
    use_local_keys(settings)  # the APIs started from here verify tokens with the stack's key
    return started


def _print_status(settings: StackSettings) -> None:
    table = Table("server", "address", "state", "data")
    for name, address, pid, data in local_stack.status(settings):
        table.add_row(name, address, f"running (pid {pid})" if pid else "stopped", data)
    console.print(table)


BROKERS_HELP = (
    "1, or 3: a KRaft quorum of three on the Kafka port, +10 and +20 (controllers: +1, +11, +21), "
    "data in kafka-1/ … kafka-3/ (default: KAFKA_BROKERS, else 1)"
)


def _stack_settings(brokers: int | None) -> StackSettings:
    return StackSettings() if brokers is None else StackSettings(kafka_brokers=brokers)


@stack_app.command("up")
def stack_up(brokers: Annotated[int | None, typer.Option(help=BROKERS_HELP)] = None) -> None:
    """Start Kafka and Redis unless running, and wait until both answer."""
    settings = _stack_settings(brokers)
    _up(settings)
    _print_status(settings)
    if settings.kafka_brokers > 1:
        console.print(
            f"clients: KAFKA_BOOTSTRAP_SERVERS={settings.bootstrap_servers}; "
            f"`cqrs` commands on this stack: KAFKA_BROKERS={settings.kafka_brokers}"
        )


@stack_app.command("down")
def stack_down() -> None:
    """Stop the services and servers this stack started (by their pid files, never by name)."""
    settings = StackSettings()
    # first the `cqrs run` of this stack, if one runs: it would restart what is stopped here
    run = ["cqrs run"] if processes.stop(_run_pid_file(settings), timeout_s=150) else []
    gateway = ["gateway"] if Gateway(settings).stop() else []
    ServiceRunner(settings).stop_all()
    stopped = run + gateway + local_stack.down(settings)
    console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@stack_app.command("status")
def stack_status(brokers: Annotated[int | None, typer.Option(help=BROKERS_HELP)] = None) -> None:
    """What runs where."""
    _print_status(_stack_settings(brokers))


@stack_app.command("credentials")
def stack_credentials(
    principal: Annotated[
        str | None,
        typer.Option(help=f"one of: {', '.join(credentials.ROLES)} (default: all; --env: operator)"),
    ] = None,
    env: Annotated[
        bool, typer.Option("--env", help='as shell exports, for `eval "$(cqrs stack credentials --env)"`')
    ] = False,
) -> None:
    """The local stack's Kafka and Redis credentials (generated by the first `stack up`, kept in
    <STACK_DIR>/credentials.json). To rotate one: delete its entry there, then `stack down` and
    `stack up` (both servers take the file's passwords on every start)."""
    settings = StackSettings()
    passwords = credentials.load(settings.stack_dir)
    if passwords is None:
        raise _fail(f"no credentials in {credentials.path(settings.stack_dir)}: `cqrs stack up` creates them")
    if principal is not None and principal not in credentials.ROLES:
        raise _fail(f"unknown principal {principal!r}; choose one of: {', '.join(credentials.ROLES)}")
    if env:
        who = principal or credentials.OPERATOR
        for name, value in credentials.client_env(who, passwords[who], settings.redis_url).items():
            print(f"export {name}={shlex.quote(value)}")
        return
    print(f"{'principal':<18} {'redis user':<10} password (Kafka SCRAM-SHA-512 and Redis)")
    for who in [principal] if principal else credentials.ROLES:  # plain lines: never truncated
        print(f"{who:<18} {'yes' if who in acl_users() else '-':<10} {passwords[who]}")


def _act_as_operator(settings: StackSettings) -> None:
    """This process and its children (topics, the test process, the CLI) act as the operator of
    the local stack: its Kafka and Redis credentials go into the environment."""
    passwords = credentials.ensure(settings.stack_dir)
    redis_url = os.environ.get("REDIS_URL", settings.redis_url)
    on = local_stack.secured(settings)
    for name, flag in (("Kafka", on.kafka), ("Redis", on.redis)):
        if not flag:
            console.print(
                f"[yellow]warning:[/yellow] the running {name} was started without authentication; "
                "`cqrs stack down` and `cqrs stack up` turn it on"
            )
    env = credentials.client_env(
        credentials.OPERATOR, passwords[credentials.OPERATOR], redis_url, kafka=on.kafka, redis=on.redis
    )
    os.environ.update(env)


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
    --bootstrap-server from KAFKA_BOOTSTRAP_SERVERS unless given, as the principal of
    KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD (a temporary client config file)."""
    settings = StackSettings()
    if tool not in TOOLS:
        raise _fail(f"unknown tool {tool!r}; choose one of: {', '.join(TOOLS)}")
    given_config = any(option in ctx.args for option in ("--command-config", "--consumer.config"))
    problem = None if given_config else kafka_problem(settings.kafka_bootstrap_servers, timeout_s=5)
    if problem:  # say which credentials are missing, rather than the tool's own timeout
        raise _fail(problem)
    try:
        result = run_tool(settings, tool, list(ctx.args))
    except KeyError:
        raise _fail(f"unknown tool {tool!r}; choose one of: {', '.join(TOOLS)}") from None
    except StackError as exc:
        raise _fail(str(exc)) from None
    raise typer.Exit(result.returncode)


@app.command("exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def exec_with_stack(ctx: typer.Context) -> None:
    """Run a command with the stack up and topics created; stop the stack after if it started it."""
    if not ctx.args:
        raise _fail("usage: cqrs exec -- COMMAND [ARGS...]")
    settings = StackSettings()
    started = _up(settings)
    _act_as_operator(settings)
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
    gateway_port: Annotated[int, typer.Option(envvar="GATEWAY_PORT")] = 8000,
) -> None:
    """Stack, topics, all four services and the gateway, kept running: whichever of them exits
    (the servers: if this run started them) is restarted with backoff. Ctrl-C or SIGTERM stops
    everything this run started; a second one stops without waiting for a start under way."""
    settings = StackSettings()
    run_pid_file = _run_pid_file(settings)
    if (other := processes.running_pid(run_pid_file)) is not None:
        raise _fail(f"`cqrs run` already runs for {settings.stack_dir} (pid {other})")
    started_at = {"redis": time.monotonic(), "kafka": time.monotonic()}  # for the supervisor
    started = _up(settings)
    run_pid_file.write_text(f"{os.getpid()}\n{RUN_MARKER}\n")  # for `cqrs stack down`
    _act_as_operator(settings)  # each service then runs as its own principal (infra/services.py)
    runner = ServiceRunner(
        settings,
        env={
            "COMMAND_API_PORT": str(command_port),
            "QUERY_API_PORT": str(query_port),
            "PROJECTOR_METRICS_PORT": str(projector_port),
        },
    )
    gateway = Gateway(settings, gateway_port, command_port, query_port)
    stopping = cleaning_up = False

    def on_signal(*_: object) -> None:
        nonlocal stopping
        if stopping and not cleaning_up:
            raise KeyboardInterrupt  # the second one: out of a start that is waiting
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        _create_topics()
        for service in services(command_port, query_port, projector_port):
            if stopping:
                break
            runner.start(service)
            try:
                runner.wait_healthy(service)
                console.print(f"started {service.name:<18} log: {runner.log_file(service)}")
            except RuntimeError as exc:  # the supervisor below restarts it, and says why it exited
                console.print(f"[red]{service.name} did not come up:[/red] {exc}")
        if not stopping:
            started_at["gateway"] = time.monotonic()
            gateway.start()  # last: it fronts the APIs
            console.print(f"started {'gateway':<18} nginx, config: {gateway.conf}")
            _print_ready(settings, gateway.url, command_port, query_port, projector_port)
        children = _supervised(settings, started, runner, gateway)
        supervisor = Supervisor(children, say=_say, started_at=started_at | runner.started_at)
        while not stopping:
            supervisor.tick()
            time.sleep(0.5)
    except (RuntimeError, StackError) as exc:
        console.print(f"[red]error:[/red] {exc}")
    finally:
        cleaning_up = True
        console.print("stopping services ...")
        gateway.stop()  # first: no new requests while the APIs stop
        runner.stop_all(runner.started)
        stopped = local_stack.down(settings, kafka=started.kafka, redis=started.redis)
        run_pid_file.unlink(missing_ok=True)
        console.print(f"stopped services{' and ' + ', '.join(stopped) if stopped else ''}")


RUN_MARKER = "cqrs run"  # in its command line: `.venv/bin/python .venv/bin/cqrs run`


def _run_pid_file(settings: StackSettings) -> Path:
    return settings.stack_dir.resolve() / "run.pid"


def _supervised(
    settings: StackSettings, started: local_stack.Started, runner: ServiceRunner, gateway: Gateway
) -> list[Supervised]:
    """What `cqrs run` keeps running: the servers it started (first: the services need them), the
    services, the gateway. A server that was up before the run is not its to restart."""
    redis = RedisServer(settings)
    servers = []
    if started.redis:
        servers.append(Supervised("redis", redis.pid_file, redis.log_file, redis.start))
    if started.kafka:  # each node alone (the others keep running); its own log4j log
        servers += [
            Supervised(b.name, b.pid_file, b.home / "logs" / "server.log", b.start)
            for b in KafkaCluster(settings).brokers
        ]
    return [
        *servers,
        *(runner.supervised(service) for service in runner.started),
        Supervised("gateway", gateway.pid_file, gateway.home / "logs" / "error.log", gateway.start),
    ]


def _say(message: str) -> None:
    """The supervisor's reports, with the time; log lines printed as they are (no markup)."""
    console.print(f"{time.strftime('%H:%M:%S')} {message}", markup=False, highlight=False)


def _print_ready(
    settings: StackSettings, g: str, command_port: int, query_port: int, projector_port: int
) -> None:
    c, q = f"http://127.0.0.1:{command_port}", f"http://127.0.0.1:{query_port}"
    signing = use_local_keys(settings)
    if signing is not None:
        staff = issue(signing, "local-operator", ALL_SCOPES, ttl_s=12 * 3600)
        alice = issue(signing, "alice", ["accounts:read", "accounts:write", "transfers:write"],
                      owner_id="alice", ttl_s=12 * 3600)  # fmt: skip
        tokens = f"""tokens (12 h; more with `cqrs auth token --subject S [--scope X ...] [--owner O]`):
  export TOKEN={staff}
      (staff: every scope, any account)
  export ALICE={alice}
      (customer alice: only her own accounts)"""
    else:
        tokens = "tokens: from your identity provider (AUTH_JWKS_URL is set)"
    auth = '-H "authorization: Bearer $TOKEN"'
    console.print(f"""
[bold green]ready[/bold green]
  gateway       {g}   — writes to the command API, reads to the query API
  command API   {c}   (OpenAPI docs: {c}/docs)
  query API     {q}   (OpenAPI docs: {q}/docs)
  projectors    http://127.0.0.1:{projector_port}/metrics (accounts), :{projector_port + 1} (transfers),
                :{projector_port + 2} (statements); transfer process :{projector_port + 3}/metrics
  views         {q}/views   (generations, checkpoints, lag; scope operator)

{tokens}

try:
  curl -s -X POST {g}/accounts {auth} -H 'content-type: application/json' \\
       -d '{{"owner_id": "alice", "currency": "EUR"}}'
  curl -s -X POST {g}/accounts/<account_id>/deposits {auth} -H 'content-type: application/json' \\
       -d '{{"amount": 1250}}'
  curl -s {g}/accounts/<account_id> -H "authorization: Bearer $ALICE"
  curl -N {g}/accounts/<account_id>/stream {auth}      (live updates, server-sent events)
  curl -s -X POST {g}/transfers {auth} -H 'content-type: application/json' \\
       -d '{{"from_account_id": "<account_id>", "to_account_id": "<other>", "amount": 500}}'
  curl -s {g}/transfers/<transfer_id> {auth}            (requested, debited, completed or failed)
  eval "$(cqrs stack credentials --env)"        (this shell acts as the operator, then:)
  cqrs kafka consumer-groups --list             (Kafka's own tools, --bootstrap-server filled in)

A service, server or the gateway that exits is restarted (with backoff) and reported here.
Ctrl-C stops everything this run started.""")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
