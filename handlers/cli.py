"""`pywats-events outbox list|push|retry-failed`: the WATS outbox commands, as a CLI command plugin.

Entry point ``pywats_events.commands: outbox`` → `outbox_app`; the core CLI adds every command plugin it
finds, so it never imports the WATS side itself. Settings come from the same TOML file and environment as
`pywats-events run`.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from pywats_events import ConfigurationError
from pywats_events.cli.app import load_cli_settings, progress_bar, require_store
from pywats_events.config import Settings
from pywats_events.logging_setup import redact

from .plugin import outbox_file
from .settings import outbox_path, wats_settings

__all__ = ["outbox_app"]

outbox_app = typer.Typer(help="WATS outbox: requests stored for store-and-forward.", no_args_is_help=True)

_out = Console(highlight=False, soft_wrap=True)
_err = Console(stderr=True, highlight=False)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML configuration file.")]
DataDirOpt = Annotated[
    Path | None, typer.Option("--data-dir", help="Journal, DLQ, quarantine, outbox and status live here.")
]
OutboxOpt = Annotated[Path | None, typer.Option(help="Outbox directory.")]


def _fail(exc: ConfigurationError) -> typer.Exit:
    _err.print(f"[bold red]configuration error[/]: {redact(str(exc))}")
    return typer.Exit(2)


def _settings(config: Path | None, data_dir: Path | None, **wats: Any) -> Settings:
    """Found and announced like every `pywats-events` command's (`load_cli_settings`)."""
    overrides: dict[str, Any] = {}
    if data_dir is not None:
        overrides["listener"] = {"data_dir": data_dir}
    if wats := {k: v for k, v in wats.items() if v is not None}:
        overrides["wats"] = wats
    return load_cli_settings(config, overrides)


def _open(settings: Settings, directory: Path | None) -> Any:
    """The outbox; exit 2 naming where it looked when there is none (never creates one)."""
    from .wats.outbox import Outbox

    return Outbox(require_store(outbox_file(directory or outbox_path(settings)), "outbox", settings))


@outbox_app.command("list")
def outbox_list(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    outbox: OutboxOpt = None,
    state: Annotated[str | None, typer.Option(help="pending, sending, sent or failed.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 100_000,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List stored WATS requests (`--json`: one object per line with method, path, params, json)."""
    box = _open(_settings(config, data_dir), outbox)
    try:
        entries = box.list(limit, state=state) if state else box.list(limit)
    finally:
        box.close()
    if as_json:
        for e in entries:
            sys.stdout.write(
                json.dumps({"method": e.method, "path": e.path, "params": e.params, "json": e.json}) + "\n"
            )
        return
    table = Table(title=f"outbox {box.path} ({len(entries)})")
    for col in ("id", "state", "method", "path", "operation", "attempts", "error"):
        table.add_column(col)
    for e in entries:
        table.add_row(
            str(e.id), e.state, e.method, e.path, e.operation, str(e.attempts), (e.error or "")[:80]
        )
    _out.print(table)


@outbox_app.command("push")
def outbox_push(
    wats_url: Annotated[str, typer.Option(help="WATS server to push to; token from WATS_AUTH_TOKEN.")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    outbox: OutboxOpt = None,
    token_file: Annotated[Path | None, typer.Option(help="File holding the WATS token.")] = None,
    limit: Annotated[int | None, typer.Option(help="Push at most this many.")] = None,
) -> None:
    """Send stored requests to a WATS server, oldest first, each once."""
    settings = _settings(config, data_dir, url=wats_url, token_file=token_file)
    box = _open(settings, outbox)

    async def push() -> Any:
        from .wats.sender import HttpSender

        wats = wats_settings(settings)
        token = wats.resolved_token()
        if not token:
            raise ConfigurationError("wats.token", "no WATS token: set WATS_AUTH_TOKEN or --token-file")
        assert wats.url is not None  # --wats-url is required
        pending = box.count("pending")
        total = pending if limit is None else min(limit, pending)
        async with HttpSender(wats.url, token, timeout=wats.timeout) as sender:
            with progress_bar("pushing to WATS", total) as advance:
                return await box.push(sender, limit=limit, progress=advance)

    try:
        result = asyncio.run(push())
    except ConfigurationError as exc:
        raise _fail(exc) from None
    finally:
        box.close()
    _out.print(f"sent {result.sent}, failed {result.failed}, pending {result.pending}")
    if result.stopped:
        _err.print(
            f"push stopped: {redact(result.stopped)}\n"
            f"{result.pending} request(s) left pending, in order; fix the cause and run `outbox push` again"
        )
        raise typer.Exit(1)
    if result.failed:
        _err.print(
            f"WATS refused {result.failed} request(s): see `pywats-events outbox list --state failed`; "
            "once the cause is fixed, `pywats-events outbox retry-failed` queues them again"
        )
        raise typer.Exit(1)


@outbox_app.command("retry-failed")
def outbox_retry_failed(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    outbox: OutboxOpt = None,
    include_unknown: Annotated[
        bool,
        typer.Option(
            "--include-unknown",
            help="Also requeue non-idempotent requests whose outcome is unknown (check WATS first).",
        ),
    ] = False,
) -> None:
    """Put failed requests back to pending, in their original order; `outbox push` then sends them."""
    box = _open(_settings(config, data_dir), outbox)
    try:
        moved = box.retry_failed(include_unknown=include_unknown)
        left = box.count("failed")
        pending = box.count("pending")
    finally:
        box.close()
    _out.print(f"{moved} failed request(s) back to pending ({pending} pending, {left} still failed)")
    if left and not include_unknown:
        _err.print(
            f"{left} request(s) with an unknown outcome stay failed: check WATS, then use --include-unknown"
        )
