"""`pywats-events console`: the operator console over a data directory, without running the listener."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from .._exceptions import ConfigurationError
from ..logging_setup import configure_logging
from .app import ConfigOpt, DataDirOpt, app, base_overrides, fail_config, load_cli_settings, out

__all__ = ["console"]


@app.command("console")
def console(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    host: Annotated[str, typer.Option(help="Address to listen on (loopback unless a token is set).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="Port (0: any free one, printed).")] = 8765,
) -> None:
    """Browse and act on a stopped listener's dead letters, quarantine and outbox in a web page.

    Actions (replay, purge, re-decode) need the token of `[console] token_file` or
    PYWATS_EVENTS_CONSOLE_TOKEN; without one the page is read-only."""
    from ..console.standalone import serve_data_dir

    settings = load_cli_settings(config, base_overrides(data_dir))
    configure_logging(level=settings.listener.log_level, json_lines=settings.listener.log_json)

    def started(bound: int) -> None:
        out.print(f"console on http://{host}:{bound}/ (Ctrl-C stops it)")

    try:
        asyncio.run(serve_data_dir(settings, host=host, port=port, config_file=config, started=started))
    except ConfigurationError as exc:
        raise fail_config(exc) from None
