"""`pywats-events plugins`: what is installed, from which distribution, and what each plugin declares."""

from __future__ import annotations

import json
import sys

from rich.table import Table
from rich.text import Text

from .app import JsonOpt, app, out

__all__ = ["plugins"]


@app.command("plugins")
def plugins(as_json: JsonOpt = False) -> None:
    """Every installed transport, codec, handler, command, settings, preview, samples and broker
    dead-letter plugin.

    Each is imported to show its event types and options model; one that cannot be imported is listed
    with the reason. It does no harm unless the configuration uses it: then `run` stops naming it."""
    from ..plugins import inventory

    found = inventory()
    if as_json:
        for info in found:
            row = {
                "group": info.kind,
                "name": info.name,
                "target": info.target,
                "distribution": info.distribution,
                "version": info.version,
                "event_types": list(info.event_types),
                "options_model": info.options_model,
                "error": info.error,
            }
            sys.stdout.write(json.dumps(row) + "\n")
        return
    table = Table(title="pywats-events plugins")
    for column in ("group", "name", "distribution", "event types / options", "target"):
        table.add_column(column)
    for info in found:
        if info.error:
            what = Text(f"cannot be imported: {info.error}", style="bold red")
        else:
            parts = [", ".join(info.event_types), info.options_model and f"options: {info.options_model}"]
            what = Text("\n".join(p for p in parts if p) or "-")
        dist = f"{info.distribution} {info.version}".strip()
        table.add_row(info.kind, info.name, dist, what, info.target)
    out.print(table)
