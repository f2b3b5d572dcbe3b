"""The `pywats-events` root command: the typer app, the consoles and the options every command shares.

Typer parses and documents the command line, rich prints tables and progress. The commands live one group
per module (`run`, `dlq`, `quarantine`, `status`) and register themselves on `app`; plugins add theirs
(``pywats_events.commands``) when `main` runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from .._exceptions import ConfigurationError
from ..config import Settings, load_settings
from ..exit_codes import ExitCode
from ..logging_setup import redact

__all__ = [
    "ConfigOpt",
    "DataDirOpt",
    "JsonOpt",
    "app",
    "base_overrides",
    "err",
    "fail_config",
    "load_cli_settings",
    "main",
    "out",
    "put",
]

app = typer.Typer(
    name="pywats-events",
    help="Factory listener: CFX / MQTT traffic → events → WATS. Try `pywats-events run` on the samples.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# markup off: error texts, ids and reasons come from outside and may contain "[...]"
out = Console(highlight=False, soft_wrap=True, markup=False)
err = Console(stderr=True, highlight=False, markup=False)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML configuration file.")]
DataDirOpt = Annotated[
    Path | None, typer.Option("--data-dir", help="Journal, DLQ, quarantine, outbox and status live here.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON object per line.")]


def fail_config(exc: ConfigurationError) -> typer.Exit:
    err.print(Text.assemble(("configuration error", "bold red"), f": {redact(str(exc))}"))
    return typer.Exit(ExitCode.CONFIG)


def load_cli_settings(config: Path | None, overrides: dict[str, Any]) -> Settings:
    try:
        return load_settings(config, overrides=overrides)
    except ConfigurationError as exc:
        raise fail_config(exc) from None


def put(d: dict[str, Any], dotted: str, value: Any) -> None:
    if value is None:
        return
    section, _, key = dotted.partition(".")
    d.setdefault(section, {})[key] = value


def base_overrides(data_dir: Path | None) -> dict[str, Any]:
    o: dict[str, Any] = {}
    put(o, "listener.data_dir", data_dir)
    return o


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
