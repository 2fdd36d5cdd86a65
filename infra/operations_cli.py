"""`cqrs views | offsets | dlq`: operating the read side against any Kafka and Redis
(KAFKA_BOOTSTRAP_SERVERS, REDIS_URL): generations, rebuilds, verification, consumer offsets and
dead letters."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, TypeVar

import redis
import typer
from pydantic_settings import BaseSettings, SettingsConfigDict
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from infra.access import kafka_problem, redis_problem
from schemas.schema_log import codec_reading_the_log
from schemas.topics import events_topic
from stream_processors.deadletters import read_letters, replay
from stream_processors.generations import Generations
from stream_processors.log_admin import GroupHasMembers, LogAdmin
from stream_processors.rebuild import Progress as RebuildProgress
from stream_processors.rebuild import Rebuilder, RebuildFailed
from stream_processors.recovery import group_id
from stream_processors.views.registry import VIEWS, view_spec

T = TypeVar("T")
views_app = typer.Typer(
    help="Read models (views) in Redis and their generations: list, status, rebuild, verify.",
    no_args_is_help=True,
)
offsets_app = typer.Typer(help="Consumer group offsets (the raw tool behind rebuilds).", no_args_is_help=True)
dlq_app = typer.Typer(help="Dead letters: events a view could not apply.", no_args_is_help=True)
console = Console(soft_wrap=True)


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    redis_url: str = "redis://127.0.0.1:6379/0"
    stack_dir: Path = Path(".stack/dev")  # rebuild workers' logs go under <stack_dir>/rebuilds


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(1)


def _check_access() -> None:
    # Runs before every views/offsets/dlq command (not for --help): a missing or refused Kafka or
    # Redis credential is named with what to set, instead of a hang or a stack trace.
    settings = OperatorSettings()
    problem = redis_problem(settings.redis_url) or kafka_problem(settings.kafka_bootstrap_servers)
    if problem:
        raise _fail(problem)


for _app in (views_app, offsets_app, dlq_app):
    _app.callback()(_check_access)


def _view_names(name: str | None) -> list[str]:
    if name is None:
        return sorted(VIEWS)
    try:
        return [view_spec(name).name]
    except ValueError as exc:
        raise _fail(str(exc)) from None


def _ago(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@views_app.command("list")
def views_list() -> None:
    """Every view, its current generation and state, and the other generations in Redis."""
    settings = OperatorSettings()
    client = redis.Redis.from_url(settings.redis_url)
    table = Table("view", "source", "generation", "state", "current", "events behind", "reason", "created")
    for name in sorted(VIEWS):
        gens = Generations(client, name)
        current = gens.current()
        known = gens.known()
        if not known:
            table.add_row(name, events_topic(VIEWS[name].source), "-", "not built", "", "", "", "")
        for generation in known:
            info = gens.info(generation)
            table.add_row(
                name,
                events_topic(VIEWS[name].source),
                str(generation),
                info.state,
                "yes" if generation == current else "",
                str(sum(info.behind().values())) if info.targets else "-",
                info.reason,
                _ago(info.created_at_ms),
            )
    console.print(table)


@views_app.command("status")
def views_status(name: Annotated[str | None, typer.Argument(help="a view; all when omitted")] = None) -> None:
    """Per partition of each view's current generation: checkpoint (last applied offset), the last
    committed event, how far behind it is, the consumer group's offset, and the group's members."""
    settings = OperatorSettings()
    client = redis.Redis.from_url(settings.redis_url)
    admin = LogAdmin(settings.kafka_bootstrap_servers)
    for view in _view_names(name):
        spec = VIEWS[view]
        gens = Generations(client, view)
        current = gens.current()
        if current is None:
            console.print(f"[bold]{view}[/bold]: no generation yet (its projector builds one on start)")
            continue
        info = gens.info(current)
        group = group_id(spec.source, view, current)
        topic = events_topic(spec.source)
        committed = admin.committed(group, topic)
        last = admin.last_event_offsets(topic)
        members = admin.members(group)
        console.print(
            f"[bold]{view}[/bold] generation {current} ({info.state}) group {group}, "
            f"{len(members)} live member(s): {', '.join(m.client_id for m in members) or 'none'}"
        )
        table = Table("partition", "checkpoint", "last event", "events behind", "group offset")
        for partition, last_event in sorted(last.items()):
            checkpoint = info.checkpoints.get(partition, -1)
            table.add_row(
                str(partition),
                str(checkpoint) if checkpoint >= 0 else "-",
                str(last_event) if last_event >= 0 else "-",
                str(max(0, last_event - checkpoint)),
                str(committed.get(partition, "-")),
            )
        console.print(table)
        console.print(
            "events behind: offsets between the checkpoint (last applied) and the last committed event. "
            "The group offset is informational: projectors resume after the checkpoint."
        )


def _with_progress(
    name: str, quiet: bool, work: Callable[[Rebuilder, Callable[[RebuildProgress], None]], T]
) -> T:
    """Runs a rebuild or a verification of a view with a progress bar (none when quiet)."""
    settings = OperatorSettings()
    rebuilder = Rebuilder(
        view_spec(_view_names(name)[0]).name,
        redis_url=settings.redis_url,
        bootstrap=settings.kafka_bootstrap_servers,
        log_dir=settings.stack_dir / "rebuilds",
    )
    if quiet:
        try:
            return work(rebuilder, lambda _: None)
        except RebuildFailed as exc:
            raise _fail(str(exc)) from None
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} events/s"),
        TimeRemainingColumn(),
        console=console,
    )
    task = bar.add_task("catching up", total=None, rate="-")

    def update(progress: RebuildProgress) -> None:
        bar.update(
            task,
            description=progress.phase,
            completed=progress.done,
            total=max(progress.total, 1),
            rate=f"{progress.events_per_s:,.0f}",
        )

    with bar:
        try:
            return work(rebuilder, update)
        except RebuildFailed as exc:
            raise _fail(str(exc)) from None


@views_app.command("rebuild")
def views_rebuild(
    name: Annotated[str, typer.Argument(help="the view, e.g. accounts")],
    from_time: Annotated[
        datetime | None,
        typer.Option(
            "--from-time",
            help="start from the first events at or after this time (ISO 8601) instead of the "
            "beginning; the view then holds only what happened since",
        ),
    ] = None,
    workers: Annotated[int, typer.Option(min=1, max=12, help="projector processes for the catch-up")] = 1,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="no progress bar; one line at the end")
    ] = False,
) -> None:
    """Build a new generation from the log while the current one keeps serving, then switch.

    The new generation gets its own consumer group, with offsets set to the earliest (or to
    --from-time); projector workers started here catch it up. When it has applied the log's last
    events and is nowhere behind the current generation, `current` flips atomically; running
    projectors follow it, the workers stop, and the old generation's keys and group are removed.
    Readers never see a 404, an error or an older value because of it.
    """
    moment = from_time.replace(tzinfo=from_time.tzinfo or UTC) if from_time else None
    report = _with_progress(
        name,
        quiet,
        lambda rebuilder, update: rebuilder.rebuild(from_time=moment, workers=workers, on_progress=update),
    )
    console.print(
        f"{report.view}: generation {report.new} is live (was {report.old}); {report.events:,} events "
        f"in {report.seconds:.1f}s ({report.events_per_s:,.0f}/s); removed {report.removed_keys:,} old keys"
    )
    if report.note:
        console.print(f"[yellow]note:[/yellow] {report.note}")


@views_app.command("verify")
def views_verify(
    name: Annotated[str, typer.Argument(help="the view, e.g. accounts")],
    workers: Annotated[
        int, typer.Option(min=1, max=12, help="projector processes for the scratch build")
    ] = 1,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Rebuild a scratch generation from the log and compare its digest with the current one's
    (at a moment both have applied the same offsets). Exit code 1 when they differ."""
    report = _with_progress(
        name, quiet, lambda rebuilder, update: rebuilder.verify(workers=workers, on_progress=update)
    )
    verdict = "[green]identical[/green]" if report.equal else "[red]DIFFERENT[/red]"
    console.print(
        f"{report.view} generation {report.generation}: {report.keys:,} keys sha256 {report.digest[:16]}…; "
        f"scratch rebuild: {report.scratch_keys:,} keys sha256 {report.scratch_digest[:16]}… -> {verdict}"
    )
    if not report.equal:
        raise typer.Exit(1)


def _targets(admin: LogAdmin, topic: str, to: str) -> dict[int, int]:
    marks = admin.watermarks(topic)
    if to == "earliest":
        return admin.earliest(topic)
    if to == "latest":
        return {p: high for p, (_, high) in marks.items()}
    if ":" in to and "T" not in to:
        try:
            pairs = dict(item.split(":") for item in to.split(","))
            offsets = {int(p): int(o) for p, o in pairs.items()}
        except ValueError:
            raise _fail(f"--to {to!r}: explicit offsets are PARTITION:OFFSET[,PARTITION:OFFSET...]") from None
        unknown = set(offsets) - set(marks)
        if unknown:
            raise _fail(f"{topic} has no partition {sorted(unknown)}")
        return offsets
    try:
        moment = datetime.fromisoformat(to)
    except ValueError:
        raise _fail(f"--to {to!r}: use earliest, latest, an ISO 8601 time, or PARTITION:OFFSET,...") from None
    return admin.offsets_for_time(topic, moment.replace(tzinfo=moment.tzinfo or UTC))


@offsets_app.command("reset")
def offsets_reset(
    group: Annotated[str, typer.Option(help="the consumer group, e.g. projector.account.accounts.g1")],
    to: Annotated[
        str,
        typer.Option(
            help="earliest | latest | an ISO 8601 time | explicit PARTITION:OFFSET,PARTITION:OFFSET"
        ),
    ],
    topic: Annotated[
        str | None, typer.Option(help="the topic; by default the one(s) the group has committed offsets for")
    ] = None,
) -> None:
    """Set a consumer group's committed offsets. Refused while the group has live members (stop
    them first: offsets of a running group would be overwritten by its next commit).

    On a view's group (projector.<source>.<view>.g<N>) moving offsets back is a rebuild request:
    when its projector starts, it builds a new generation from these offsets while generation N
    keeps serving, then flips (the same path as `views rebuild`; Kafka's own
    `kafka-consumer-groups --reset-offsets` does the same). Earliest rebuilds the whole view; a
    time or explicit offsets build a generation of only the events from there on."""
    settings = OperatorSettings()
    admin = LogAdmin(settings.kafka_bootstrap_servers)
    topics = [topic] if topic else admin.topics_of(group)
    if not topics:
        raise _fail(f"group {group} has no committed offsets; name the topic with --topic")
    for name in topics:
        offsets = _targets(admin, name, to)
        try:
            admin.set_offsets(group, name, offsets)
        except GroupHasMembers as exc:
            raise _fail(str(exc)) from None
        shown = ", ".join(f"{p}:{o}" for p, o in sorted(offsets.items()))
        console.print(f"{group} on {name} -> {shown}")
    if group.startswith("projector."):
        console.print("its projector builds a new generation from these offsets when it starts")


@dlq_app.command("list")
def dlq_list(
    aggregate: Annotated[str, typer.Option(help="whose events: deadletters.<aggregate>")] = "account",
    limit: Annotated[int, typer.Option(help="show at most this many (newest last)")] = 50,
) -> None:
    """The dead letters: where each came from, for which view, and why."""
    settings = OperatorSettings()
    letters = read_letters(settings.kafka_bootstrap_servers, aggregate)
    table = Table("letter", "written", "view", "source event", "error")
    for letter in letters[-limit:]:
        table.add_row(
            f"{letter.partition}:{letter.offset}",
            letter.written_at.strftime("%Y-%m-%d %H:%M:%S"),
            letter.view,
            letter.source,
            letter.error[:120],
        )
    console.print(table)
    console.print(f"{len(letters)} dead letter(s) in deadletters.{aggregate}")


@dlq_app.command("replay")
def dlq_replay(
    view: Annotated[str, typer.Option(help="re-drive the letters of this view")] = "accounts",
    aggregate: Annotated[str | None, typer.Option(help="default: the view's source aggregate")] = None,
) -> None:
    """Project dead letters again with today's code into the view's current generation, once each
    (a letter already re-driven is skipped, so running this twice is safe). Letters that still
    fail stay listed with their new error."""
    settings = OperatorSettings()
    spec = view_spec(_view_names(view)[0])
    began = time.monotonic()
    letters = read_letters(settings.kafka_bootstrap_servers, aggregate or spec.source)
    report = replay(
        letters, spec, settings.redis_url, codec_reading_the_log(settings.kafka_bootstrap_servers)
    )
    console.print(
        f"{spec.name}: {report.applied} applied, {report.already_applied} already applied before, "
        f"{len(report.still_failing)} still failing, {report.other_views} for other views "
        f"({time.monotonic() - began:.1f}s)"
    )
    for letter, error in report.still_failing:
        console.print(f"  still failing: {letter.source}: {error}")
    if report.still_failing:
        raise typer.Exit(1)
