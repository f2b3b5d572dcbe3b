"""`pywats-events quarantine list|show`: input that could not be decoded, kept with its raw bytes."""

from __future__ import annotations

import base64
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..exit_codes import ExitCode
from ..logging_setup import redact
from .app import ConfigOpt, DataDirOpt, JsonOpt, app, base_overrides, err, load_cli_settings, out

__all__ = ["quarantine_app"]

quarantine_app = typer.Typer(help="Quarantine: input that could not be decoded.", no_args_is_help=True)
app.add_typer(quarantine_app, name="quarantine")


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

    settings = load_cli_settings(config, base_overrides(data_dir))
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

    settings = load_cli_settings(config, base_overrides(data_dir))
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
