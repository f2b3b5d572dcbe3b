"""`pywats-events`: the listener command line (typer for parsing and help, rich for tables and progress)."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from .._exceptions import ConfigurationError
from ..config import Settings, load_settings
from ..exit_codes import ExitCode
from ..logging_setup import configure_logging, redact

__all__ = ["app", "main"]

app = typer.Typer(
    name="pywats-events",
    help="Factory listener: CFX / MQTT traffic → events → WATS. Try `pywats-events run` on the samples.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
dlq_app = typer.Typer(help="Dead-letter queue: events a handler gave up on.", no_args_is_help=True)
quarantine_app = typer.Typer(help="Quarantine: input that could not be decoded.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
app.add_typer(quarantine_app, name="quarantine")

# markup off: error texts, ids and reasons come from outside and may contain "[...]"
out = Console(highlight=False, soft_wrap=True, markup=False)
err = Console(stderr=True, highlight=False, markup=False)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML configuration file.")]
DataDirOpt = Annotated[
    Path | None, typer.Option("--data-dir", help="Journal, DLQ, quarantine, outbox and status live here.")
]


def _fail_config(exc: ConfigurationError) -> typer.Exit:
    err.print(Text.assemble(("configuration error", "bold red"), f": {redact(str(exc))}"))
    return typer.Exit(ExitCode.CONFIG)


def _settings(config: Path | None, overrides: dict[str, Any]) -> Settings:
    try:
        return load_settings(config, overrides=overrides)
    except ConfigurationError as exc:
        raise _fail_config(exc) from None


def _put(d: dict[str, Any], dotted: str, value: Any) -> None:
    if value is None:
        return
    section, _, key = dotted.partition(".")
    d.setdefault(section, {})[key] = value


def _base_overrides(data_dir: Path | None) -> dict[str, Any]:
    o: dict[str, Any] = {}
    _put(o, "listener.data_dir", data_dir)
    return o


# ---------------------------------------------------------------------------------------------- run
@app.command()
def run(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    replay: Annotated[
        list[Path] | None,
        typer.Option("--replay", help="File, directory or JSON-lines capture (repeatable)."),
    ] = None,
    rate: Annotated[float | None, typer.Option(help="Replay rate in messages/s (0 = full speed).")] = None,
    amqp: Annotated[
        str | None, typer.Option("--amqp", help="RabbitMQ URL, e.g. amqp://user:pw@host/vhost.")
    ] = None,
    exchange: Annotated[str | None, typer.Option(help="AMQP exchange CFX endpoints publish to.")] = None,
    queue: Annotated[str | None, typer.Option(help="AMQP queue to consume.")] = None,
    binding: Annotated[list[str] | None, typer.Option(help="AMQP routing-key pattern (repeatable).")] = None,
    mqtt: Annotated[
        str | None, typer.Option("--mqtt", help="MQTT broker URL, e.g. mqtt://host:1883.")
    ] = None,
    topic: Annotated[list[str] | None, typer.Option(help="MQTT topic filter (repeatable).")] = None,
    wats_url: Annotated[str | None, typer.Option(help="WATS server; token from WATS_AUTH_TOKEN.")] = None,
    token_file: Annotated[Path | None, typer.Option(help="File holding the WATS token.")] = None,
    outbox: Annotated[Path | None, typer.Option(help="Directory of the local WATS outbox.")] = None,
    max_messages: Annotated[int | None, typer.Option(help="Stop after N inbound messages.")] = None,
    idle_exit: Annotated[float | None, typer.Option(help="Stop after S seconds without input.")] = None,
    drain_timeout: Annotated[float | None, typer.Option(help="Seconds to drain on stop.")] = None,
    metrics_port: Annotated[int | None, typer.Option(help="Serve /healthz /readyz /metrics here.")] = None,
    log_json: Annotated[bool | None, typer.Option("--log-json/--log-text", help="JSON log lines.")] = None,
    log_level: Annotated[str | None, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = None,
    no_journal: Annotated[
        bool, typer.Option("--no-journal", help="Run without the durable journal.")
    ] = False,
) -> None:
    """Run the listener. With no options: replay the bundled CFX samples into the local outbox and exit."""
    o = _base_overrides(data_dir)
    _put(o, "replay.paths", replay or None)
    _put(o, "replay.rate", rate)
    _put(o, "amqp.url", amqp)
    _put(o, "amqp.exchange", exchange)
    _put(o, "amqp.queue", queue)
    _put(o, "amqp.bindings", binding or None)
    _put(o, "mqtt.url", mqtt)
    _put(o, "mqtt.topics", topic or None)
    _put(o, "wats.url", wats_url)
    _put(o, "wats.token_file", token_file)
    _put(o, "wats.outbox", outbox)
    _put(o, "listener.max_messages", max_messages)
    _put(o, "listener.idle_exit", idle_exit)
    _put(o, "listener.drain_timeout", drain_timeout)
    _put(o, "listener.metrics_port", metrics_port)
    _put(o, "listener.log_json", log_json)
    _put(o, "listener.log_level", log_level)
    if no_journal:
        _put(o, "journal.enabled", False)
    settings = _settings(config, o)
    configure_logging(level=settings.listener.log_level, json_lines=settings.listener.log_json)
    from ._listener import Listener

    live: Live | None = None
    if settings.listener.progress and err.is_terminal:
        live = Live(Text(""), console=err, refresh_per_second=4, transient=True)

    def progress(listener: Listener) -> None:
        if live is not None:
            live.update(_progress_line(listener))

    listener = Listener(settings, progress=progress)
    try:
        if live is not None:
            live.start()
        summary = asyncio.run(listener.run())
    except ConfigurationError as exc:
        raise _fail_config(exc) from None
    except ConnectionError as exc:
        err.print(Text.assemble(("cannot start", "bold red"), f": {redact(str(exc))}"))
        raise typer.Exit(ExitCode.ERROR) from None
    finally:
        if live is not None:
            live.stop()
    _print_summary(summary)
    if summary.exit_code:
        raise typer.Exit(summary.exit_code)


def _progress_line(listener: Any) -> Text:
    s = listener.stats
    return Text.assemble(
        ("● ", "green"),
        f"messages {s.received}  events {s.accepted}  handled {s.handled}  "
        f"quarantined {s.quarantined}  retries {s.retries}  dead letters {s.dead_letters}  "
        f"journal {listener.journal_depth}",
    )


def _print_summary(summary: Any) -> None:
    st = summary.stats
    table = Table(title="pywats-events run summary", show_header=True, header_style="bold")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("messages received", str(st["received"]))
    table.add_row("messages decoded", str(st["decoded"]))
    table.add_row("messages quarantined", str(st["quarantined"]))
    table.add_row("events accepted", str(st["accepted"]))
    for et, n in sorted(st["events_by_type"].items()):
        table.add_row(f"  event {et}", str(n))
    table.add_row("handler completions", str(st["handled"]))
    for ep, n in sorted(st["requests_by_endpoint"].items()):
        table.add_row(f"  WATS {ep}", str(n))
    for status, n in sorted(st["requests_by_status"].items()):
        table.add_row(f"  WATS status {status}", str(n))
    table.add_row("retries", str(st["retries"]))
    table.add_row("deferred (outage)", str(st["deferred"]))
    table.add_row("failures (dead letters)", str(st["dead_letters"]))
    table.add_row("journal depth (unfinished)", str(summary.journal_depth))
    table.add_row("DLQ size", str(summary.dlq_size))
    table.add_row("quarantine size", str(summary.quarantine_size))
    out.print(table)
    for key, value in summary.facts.items():
        out.print(f"{key}: {redact(value)}")
    out.print(
        f"stopped: {summary.stopped_by or 'error'} after {summary.elapsed:.1f}s; drained: {summary.drained}"
    )
    left = summary.unfinished
    if left.total:
        out.print(
            f"not drained: {left.total} event(s) unfinished in the journal; the next start resumes them"
        )
        for handler, n in sorted(left.by_handler.items()):
            out.print(f"  {handler}: {n} unfinished — {left.reasons.get(handler, '?')}")
    if summary.exit_code:
        out.print(f"exit code {int(summary.exit_code)} ({summary.exit_code.name.lower().replace('_', ' ')})")


# ---------------------------------------------------------------------------------------------- dlq
def _parse_time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise _fail_config(ConfigurationError(name, f"not an ISO date/time: {value!r}")) from None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


#: DLQ ids are 32 hex digits; `show`/`replay` also take a unique prefix of one
_ID_WIDTH = 32
#: console width from which `dlq list` prints a table
_WIDE = 130


def _dlq(settings: Settings) -> Any:
    from ..policies import SqliteDeadLetterQueue

    return SqliteDeadLetterQueue(settings.dlq_path)


def _dlq_select(
    settings: Settings,
    handler: str | None,
    event_type: str | None,
    error: str | None,
    since: str | None,
    until: str | None,
) -> list[Any]:
    t_since, t_until = _parse_time(since, "--since"), _parse_time(until, "--until")
    entries = _dlq(settings).get_entries(handler=handler, event_type=event_type, since=t_since)
    if error:
        needle = error.lower()
        entries = [e for e in entries if needle in e.error.lower() or needle in e.error_type.lower()]
    if t_until is not None:
        entries = [e for e in entries if e.last_failure <= t_until]
    return entries


HandlerOpt = Annotated[str | None, typer.Option(help="Only entries of this handler.")]
TypeOpt = Annotated[str | None, typer.Option("--event-type", help="Only this event type, e.g. test.result.")]
ErrorOpt = Annotated[str | None, typer.Option(help="Only entries whose error (type or text) contains this.")]
SinceOpt = Annotated[str | None, typer.Option(help="Last failure at or after (ISO time).")]
UntilOpt = Annotated[str | None, typer.Option(help="Last failure at or before (ISO time).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON object per line.")]


@dlq_app.command("list")
def dlq_list(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    handler: HandlerOpt = None,
    event_type: TypeOpt = None,
    error: ErrorOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List dead letters."""
    settings = _settings(config, _base_overrides(data_dir))
    entries = _dlq_select(settings, handler, event_type, error, since, until)
    if as_json:
        for e in entries:
            out.print_json(data=_dlq_dict(e, full=False), indent=None)
        return
    rows = [
        (
            e.id,
            e.last_failure.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
            e.handler,
            e.event.type_name,
            str(e.attempts),
            redact(f"{e.error_type.rsplit('.', 1)[-1]}: {e.error}")[:300],
        )
        for e in entries
    ]
    if out.width < _WIDE:
        # a narrow console (or a pipe) would squeeze a table until ids are cut: one entry per two lines
        out.print(f"dead letters ({len(entries)}); times UTC")
        for row in rows:
            out.print(Text(f"{row[0]}  {row[1]}  {row[2]}  {row[3]}  attempts {row[4]}", style="bold"))
            out.print(Text(f"    {row[5]}"))
        return
    table = Table(title=f"dead letters ({len(entries)})", expand=True)
    # ids are what `dlq show` / `dlq replay` take: never cut them; the error text wraps instead
    table.add_column("id", no_wrap=True, min_width=_ID_WIDTH)
    table.add_column("last failure (UTC)", no_wrap=True)
    table.add_column("handler", no_wrap=True)
    table.add_column("event type", no_wrap=True)
    table.add_column("attempts", justify="right", no_wrap=True)
    table.add_column("error", ratio=1, min_width=20)
    for row in rows:
        table.add_row(*row)
    out.print(table)


def _dlq_dict(e: Any, *, full: bool) -> dict[str, Any]:
    d: dict[str, Any] = {
        "id": e.id,
        "handler": e.handler,
        "event_type": e.event.type_name,
        "event_id": e.event.id,
        "error_type": e.error_type,
        "error": redact(e.error),
        "attempts": e.attempts,
        "first_failure": e.first_failure.isoformat(),
        "last_failure": e.last_failure.isoformat(),
    }
    if full:
        d["event"] = json.loads(e.event.to_json())
    return d


@dlq_app.command("show")
def dlq_show(entry_id: str, config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """Show one dead letter with its event."""
    settings = _settings(config, _base_overrides(data_dir))
    dlq = _dlq(settings)
    entry = dlq.get(_resolve_ids(dlq, [entry_id])[0])
    if entry is None:
        err.print(f"no dead letter {entry_id!r}")
        raise typer.Exit(ExitCode.ERROR)
    out.print_json(data=_dlq_dict(entry, full=True))


def _resolve_ids(dlq: Any, given: list[str]) -> list[str]:
    """Full ids for `given` ids or unique id prefixes (as `dlq list` shows them); exit 1 naming a bad one."""
    known = [e.id for e in dlq.get_entries()]
    resolved: list[str] = []
    for wanted in given:
        wanted = wanted.strip().rstrip("…")
        matches = [k for k in known if k == wanted] or [k for k in known if wanted and k.startswith(wanted)]
        if len(matches) != 1:
            problem = "matches several dead letters" if matches else "is no dead letter"
            err.print(f"{wanted!r} {problem} (see `pywats-events dlq list`)")
            raise typer.Exit(ExitCode.ERROR)
        resolved.append(matches[0])
    return resolved


@dlq_app.command("purge")
def dlq_purge(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    handler: HandlerOpt = None,
    event_type: TypeOpt = None,
    error: ErrorOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Delete dead letters (all, or those matching the filters)."""
    settings = _settings(config, _base_overrides(data_dir))
    entries = _dlq_select(settings, handler, event_type, error, since, until)
    if not entries:
        out.print("nothing to purge")
        return
    if not yes and not typer.confirm(f"delete {len(entries)} dead letters?"):
        raise typer.Exit(ExitCode.ERROR)
    dlq = _dlq(settings)
    removed = sum(1 for e in entries if dlq.remove(e.id))
    out.print(f"purged {removed} dead letters")


@dlq_app.command("replay")
def dlq_replay(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    handler: HandlerOpt = None,
    event_type: TypeOpt = None,
    error: ErrorOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    ids: Annotated[
        list[str] | None, typer.Argument(help="Entries to replay (ids or unique id prefixes); default all.")
    ] = None,
    entry_id: Annotated[
        list[str] | None, typer.Option("--id", help="Replay only this entry (repeatable).")
    ] = None,
    wats_url: Annotated[
        str | None, typer.Option(help="WATS server (as for `run`); token from WATS_AUTH_TOKEN.")
    ] = None,
    token_file: Annotated[Path | None, typer.Option(help="File holding the WATS token.")] = None,
    outbox: Annotated[Path | None, typer.Option(help="Directory of the local WATS outbox.")] = None,
) -> None:
    """Hand dead letters back to the handler that failed them, with the current configuration.

    Give the WATS server the same way as to `run` (file, environment or `--wats-url`): without one the
    handlers write into the local outbox. Safe while the listener runs: the replay has its own journal."""
    o = _base_overrides(data_dir)
    _put(o, "wats.url", wats_url)
    _put(o, "wats.token_file", token_file)
    _put(o, "wats.outbox", outbox)
    settings = _settings(config, o)
    configure_logging(level=settings.listener.log_level, json_lines=settings.listener.log_json)
    entries = _dlq_select(settings, handler, event_type, error, since, until)
    explicit = [*(ids or []), *(entry_id or [])]
    if explicit:
        wanted = set(_resolve_ids(_dlq(settings), explicit))
        entries = [e for e in entries if e.id in wanted]
    if not entries:
        out.print("nothing to replay")
        return
    from ._listener import replay_dead_letters

    try:
        result = asyncio.run(replay_dead_letters(settings, [e.id for e in entries]))
    except ConfigurationError as exc:
        raise _fail_config(exc) from None
    target = result.facts.get("wats") or result.facts.get("outbox") or "?"
    out.print(
        f"replayed {result.replayed} dead letters to {redact(target)}: {result.failed_again} failed again"
        f" (DLQ now {result.dlq_size})"
    )
    if result.skipped:
        err.print(
            f"skipped {len(result.skipped)} entries whose handler is not configured (listener.handlers);"
            " they stay in the DLQ (see the log for the handler names)"
        )
    if result.stopped_early:
        err.print(
            f"stopped early: {result.not_replayed} selected entries were not replayed and stay in the DLQ"
            f" (a handler did not finish within listener.drain_timeout ="
            f" {settings.listener.drain_timeout:g}s;"
            " is WATS reachable?)"
        )
        raise typer.Exit(ExitCode.ERROR)
    if result.skipped:
        raise typer.Exit(ExitCode.ERROR)


# ---------------------------------------------------------------------------------------------- status
@app.command()
def status(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
) -> None:
    """Journal depth, breaker states, DLQ and quarantine size (from the stores and the running listener)."""
    from .status import collect_status

    settings = _settings(config, _base_overrides(data_dir))
    data = collect_status(settings)
    if as_json:
        sys.stdout.write(json.dumps(data, default=str) + "\n")
        return
    table = Table(title=f"pywats-events status ({settings.listener.data_dir})", show_header=False)
    table.add_column("what")
    table.add_column("value")
    for key, value in data.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
        table.add_row(key, str(value))
    out.print(table)


# ---------------------------------------------------------------------------------------------- quarantine
@quarantine_app.command("list")
def quarantine_list(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    reason: Annotated[str | None, typer.Option(help="Only reasons containing this text.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """List quarantined input (reason, size, topic, time)."""
    from ..quarantine import SqliteQuarantine

    settings = _settings(config, _base_overrides(data_dir))
    items = SqliteQuarantine(settings.quarantine_path).list(limit=limit, reason=reason)
    if as_json:
        for q in items:
            sys.stdout.write(
                json.dumps({"id": q.id, "at": q.at, "reason": q.reason, "topic": q.topic, "size": q.size})
                + "\n"
            )
        return
    table = Table(title=f"quarantine ({len(items)})")
    for col in ("id", "time", "size", "topic", "reason"):
        table.add_column(col)
    for q in items:
        when = datetime.fromtimestamp(q.at, timezone.utc).isoformat(timespec="seconds")
        table.add_row(str(q.id), when, str(q.size), q.topic or "", redact(q.reason)[:100])
    out.print(table)


@quarantine_app.command("show")
def quarantine_show(
    item_id: int,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    raw: Annotated[Path | None, typer.Option(help="Write the raw bytes to this file.")] = None,
) -> None:
    """Show one quarantined message (headers, reason, the start of the raw bytes)."""
    from ..quarantine import SqliteQuarantine

    settings = _settings(config, _base_overrides(data_dir))
    item = SqliteQuarantine(settings.quarantine_path).get(item_id)
    if item is None:
        err.print(f"no quarantined message {item_id}")
        raise typer.Exit(ExitCode.ERROR)
    body = item.raw or b""
    if raw is not None:
        raw.write_bytes(body)
    out.print_json(
        data={
            "id": item.id,
            "at": item.at,
            "reason": redact(item.reason),
            "source": item.source,
            "topic": item.topic,
            "headers": item.headers,
            "size": item.size,
            "raw_head_b64": base64.b64encode(body[:512]).decode(),
            "raw_head_text": body[:512].decode("utf-8", "replace"),
        }
    )


def add_plugin_commands() -> None:
    """Adds the subcommands plugins declare (``pywats_events.commands``, e.g. the WATS `outbox`)."""
    from ..plugins import command_plugins

    known = {c.name or getattr(c.callback, "__name__", None) for c in app.registered_commands}
    known |= {g.name for g in app.registered_groups}
    for name, sub in command_plugins().items():
        if name not in known:
            app.add_typer(sub, name=name)
            known.add(name)


def main() -> None:
    """Console-script entry point."""
    add_plugin_commands()
    app()
