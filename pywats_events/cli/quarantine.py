"""`pywats-events quarantine list|show|purge|replay`: input that could not be decoded, kept with its raw
bytes; `replay` decodes it again after a codec or configuration fix."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from .._exceptions import ConfigurationError
from ..config import Settings
from ..exit_codes import ExitCode
from ..logging_setup import configure_logging, redact
from ..quarantine import SqliteQuarantine
from .app import (
    ConfigOpt,
    DataDirOpt,
    JsonOpt,
    app,
    base_overrides,
    err,
    extensible_command,
    fail_config,
    load_cli_settings,
    log_config,
    out,
    progress_bar,
    purge,
    put,
    require_store,
)

__all__ = ["quarantine_app"]

quarantine_app = typer.Typer(help="Quarantine: input that could not be decoded.", no_args_is_help=True)
app.add_typer(quarantine_app, name="quarantine")


def _store(settings: Settings) -> SqliteQuarantine:
    """The quarantine of the configured data directory; exit 2 when there is none (never creates one)."""
    return SqliteQuarantine(require_store(settings.quarantine_path, "quarantine", settings))


@quarantine_app.command("list")
def quarantine_list(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    reason: Annotated[str | None, typer.Option(help="Only reasons containing this text.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """List quarantined input (reason, size, topic, time)."""
    settings = load_cli_settings(config, base_overrides(data_dir))
    items = _store(settings).list(limit=limit, reason=reason)
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
    settings = load_cli_settings(config, base_overrides(data_dir))
    item = _store(settings).get(item_id)
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


ReasonOpt = Annotated[str | None, typer.Option(help="Only entries whose reason contains this text.")]
IdsArg = Annotated[
    list[int] | None, typer.Argument(help="Entry ids (default: all, or those --reason selects).")
]


def _selected(store: SqliteQuarantine, ids: list[int] | None, reason: str | None) -> list[int]:
    chosen = store.ids(reason=reason)
    if ids:
        missing = sorted(set(ids) - set(chosen))
        if missing:
            err.print(
                f"no quarantined message {', '.join(map(str, missing))} (see `pywats-events quarantine list`)"
            )
            raise typer.Exit(ExitCode.ERROR)
        chosen = [i for i in chosen if i in set(ids)]
    return chosen


@quarantine_app.command("purge")
def quarantine_purge(
    ids: IdsArg = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    reason: ReasonOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Delete quarantined messages (all, the ids given, or those whose reason matches)."""
    settings = load_cli_settings(config, base_overrides(data_dir))
    store = _store(settings)
    chosen = _selected(store, ids, reason)
    purge(len(chosen), "quarantined messages", lambda: sum(1 for i in chosen if store.remove(i)), yes=yes)


def quarantine_replay(
    ids: IdsArg = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    reason: ReasonOpt = None,
    plugin_settings: dict[str, Any] | None = None,
) -> None:
    """Decode quarantined messages again with the current codec and configuration.

    What decodes now goes to the handlers like fresh input (give their destination as for `run`, e.g.
    --wats-url; without one the WATS handlers write into the local outbox) and leaves the quarantine;
    what still does not decode stays. Exit 0 when everything that decoded was delivered, 3 when some of
    it went to the dead-letter queue, 4 when delivery did not finish within listener.drain_timeout."""
    o = base_overrides(data_dir)
    for setting, value in (plugin_settings or {}).items():
        put(o, setting, value)
    settings = load_cli_settings(config, o, announce=False)
    configure_logging(level=settings.listener.log_level, json_lines=settings.listener.log_json)
    log_config(config, settings)
    chosen = _selected(_store(settings), ids, reason)
    if not chosen:
        out.print("nothing to replay")
        return
    from ..listener.quarantine_replay import replay_quarantine

    try:
        with progress_bar("re-decoding", len(chosen)) as advance:
            result = asyncio.run(replay_quarantine(settings, chosen, progress=advance))
    except ConfigurationError as exc:
        raise fail_config(exc) from None
    target = ", ".join(result.destinations) or "?"
    out.print(
        f"re-decoded {result.decoded} of {result.selected} quarantined messages into {result.events} events"
        f" for {redact(target)}; {result.still_undecodable} still undecodable (they stay in the quarantine)"
    )
    if not result.drained:
        err.print(
            "not drained: some events were not delivered within listener.drain_timeout ="
            f" {settings.listener.drain_timeout:g}s; the next `quarantine replay` resumes them"
        )
        raise typer.Exit(ExitCode.NOT_DRAINED)
    if result.dead_letters:
        err.print(
            f"{result.dead_letters} events went to the dead-letter queue (see `pywats-events dlq list`)"
        )
        raise typer.Exit(ExitCode.DEAD_LETTERS)


extensible_command(quarantine_app, "replay", quarantine_replay, after="reason", path="quarantine replay")
