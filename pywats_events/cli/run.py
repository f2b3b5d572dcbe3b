"""`pywats-events run`: the listener, with a live progress line and a summary table at the end."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.table import Table
from rich.text import Text

from .._exceptions import ConfigurationError
from ..exit_codes import ExitCode
from ..logging_setup import configure_logging, redact
from .app import (
    ConfigOpt,
    DataDirOpt,
    app,
    base_overrides,
    err,
    extensible_command,
    fail_config,
    load_cli_settings,
    log_config,
    out,
    put,
)

__all__ = ["run"]


def run(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    replay: Annotated[
        list[Path] | None,
        typer.Option("--replay", help="File, directory or JSON-lines capture (repeatable)."),
    ] = None,
    rate: Annotated[float | None, typer.Option(help="Replay rate in messages/s (0 = full speed).")] = None,
    mqtt: Annotated[
        str | None, typer.Option("--mqtt", help="MQTT broker URL, e.g. mqtt://host:1883.")
    ] = None,
    topic: Annotated[list[str] | None, typer.Option(help="MQTT topic filter (repeatable).")] = None,
    max_messages: Annotated[int | None, typer.Option(help="Stop after N inbound messages.")] = None,
    idle_exit: Annotated[float | None, typer.Option(help="Stop after S seconds without input.")] = None,
    drain_timeout: Annotated[float | None, typer.Option(help="Seconds to drain on stop.")] = None,
    metrics_port: Annotated[int | None, typer.Option(help="Serve /healthz /readyz /metrics here.")] = None,
    log_json: Annotated[bool | None, typer.Option("--log-json/--log-text", help="JSON log lines.")] = None,
    log_level: Annotated[str | None, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = None,
    no_journal: Annotated[
        bool, typer.Option("--no-journal", help="Run without the durable journal.")
    ] = False,
    plugin_settings: dict[str, Any] | None = None,
) -> None:
    """Run the listener. With no options: replay the bundled CFX samples into the local outbox and exit.

    Besides these options, the installed plugins add their own (e.g. --amqp, --wats-url)."""
    o = base_overrides(data_dir)
    put(o, "replay.paths", replay or None)
    put(o, "replay.rate", rate)
    put(o, "mqtt.url", mqtt)
    put(o, "mqtt.topics", topic or None)
    for setting, value in (plugin_settings or {}).items():
        put(o, setting, value)
    put(o, "listener.max_messages", max_messages)
    put(o, "listener.idle_exit", idle_exit)
    put(o, "listener.drain_timeout", drain_timeout)
    put(o, "listener.metrics_port", metrics_port)
    put(o, "listener.log_json", log_json)
    put(o, "listener.log_level", log_level)
    if no_journal:
        put(o, "journal.enabled", False)
    settings = load_cli_settings(config, o, announce=False)
    configure_logging(level=settings.listener.log_level, json_lines=settings.listener.log_json)
    log_config(config, settings)
    from ..listener import Listener

    live: Live | None = None
    if settings.listener.progress and err.is_terminal:
        live = Live(Text(""), console=err, refresh_per_second=4, transient=True)

    def progress(listener: Listener) -> None:
        if live is not None:
            live.update(_progress_line(listener))

    listener = Listener(settings, progress=progress)
    listener.config_file = config  # the console shows which settings came from it
    try:
        if live is not None:
            live.start()
        summary = asyncio.run(listener.run())
    except ConfigurationError as exc:
        raise fail_config(exc) from None
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
    for what, value in summary.rows:
        table.add_row(what, value)
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


extensible_command(app, "run", run, after="rate")
