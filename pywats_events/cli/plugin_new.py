"""`pywats-events plugin new NAME`: writes a ready handler plugin (see `pywats_events.scaffold`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .._exceptions import ConfigurationError
from .app import app, err, fail_config, out

__all__ = ["plugin_app"]

plugin_app = typer.Typer(help="Write a new handler plugin.", no_args_is_help=True)
app.add_typer(plugin_app, name="plugin")


@plugin_app.command("new")
def new(
    name: Annotated[str, typer.Argument(help="Plugin name: its entry point and [handlers.NAME] table.")],
    directory: Annotated[Path, typer.Option("--dir", help="Where the plugin's folder is made.")] = Path("."),
) -> None:
    """A plugin distribution in ./NAME: pyproject with the entry point, handler, options model, tests."""
    from ..scaffold import new_plugin

    try:
        root = new_plugin(name, directory)
    except ConfigurationError as exc:
        raise fail_config(exc) from None
    out.print(f"wrote {root}")
    err.print(f"next: pip install ./{root.name} && pytest {root.name}")
