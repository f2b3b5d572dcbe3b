"""`pywats-events status`: journal depth, breakers, DLQ and quarantine size, and the running listener."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.table import Table

from .app import ConfigOpt, DataDirOpt, app, base_overrides, load_cli_settings, out, require_store

__all__ = ["status"]


@app.command()
def status(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
) -> None:
    """Journal depth, breaker states, DLQ and quarantine size (from the stores and the running listener)."""
    from ..listener.status import collect_status

    settings = load_cli_settings(config, base_overrides(data_dir))
    require_store(settings.listener.data_dir, "data directory", settings)
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
