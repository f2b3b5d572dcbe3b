"""The `pywats-events` root command: the typer app, the consoles and the options every command shares.

Typer parses and documents the command line, rich prints tables and progress. The commands live one group
per module (`run`, `dlq`, `quarantine`, `status`) and register themselves on `app`; plugins add theirs
(``pywats_events.commands``) when `main` runs.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
from collections.abc import Callable, Iterator, Sequence
from inspect import Parameter
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.text import Text

from .._exceptions import ConfigurationError
from ..config import Settings, discover_config, load_settings
from ..exit_codes import ExitCode
from ..logging_setup import redact
from ..plugins import RunOption, settings_sections

KEYWORD_ONLY = Parameter.KEYWORD_ONLY
log = logging.getLogger("pywats_events.cli")

__all__ = [
    "ConfigOpt",
    "DataDirOpt",
    "JsonOpt",
    "app",
    "base_overrides",
    "err",
    "extensible_command",
    "fail_config",
    "install_plugin_options",
    "load_cli_settings",
    "log_config",
    "main",
    "out",
    "progress_bar",
    "put",
    "require_store",
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
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="TOML configuration file (default: $PYWATS_EVENTS_CONFIG, else"
        " /etc/pywats-events/listener.toml).",
    ),
]
DataDirOpt = Annotated[
    Path | None, typer.Option("--data-dir", help="Journal, DLQ, quarantine, outbox and status live here.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON object per line.")]


def fail_config(exc: ConfigurationError) -> typer.Exit:
    err.print(Text.assemble(("configuration error", "bold red"), f": {redact(str(exc))}"))
    return typer.Exit(ExitCode.CONFIG)


def load_cli_settings(config: Path | None, overrides: dict[str, Any], *, announce: bool = True) -> Settings:
    """The settings a command uses: the configuration file found by `discover_config`, the environment and
    `overrides`. With `announce`, says on stderr which file and which data directory they are, so an
    operator never reads another directory's (or no) data by mistake."""
    location = discover_config(config)
    try:
        settings = load_settings(location.path, overrides=overrides)
    except ConfigurationError as exc:
        raise fail_config(exc) from None
    if announce:
        err.print(f"config: {location.describe()}")
        err.print(f"data directory: {settings.listener.data_dir.resolve()}")
    return settings


@contextlib.contextmanager
def progress_bar(description: str, total: int) -> Iterator[Callable[[], None]]:
    """A rich progress bar on stderr for `total` steps; yields the function that advances it by one.

    Only on a terminal: piped or logged output (a service, a script) stays free of control sequences."""
    if not err.is_terminal or total <= 0:
        yield lambda: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda: bar.advance(task)


def log_config(config: Path | None, settings: Settings) -> None:
    """The announcement of `load_cli_settings` as a log line, for commands that log (JSON lines stay
    JSON lines)."""
    log.info(
        "config: %s; data directory: %s",
        discover_config(config).describe(),
        settings.listener.data_dir.resolve(),
    )


def require_store(path: Path, what: str, settings: Settings) -> Path:
    """`path` if it exists; else exit 2 saying where the command looked: a store that is not there means
    a wrong data directory or configuration far more often than an empty one, and must not read as one."""
    if path.exists():
        return path
    err.print(
        Text.assemble(
            (f"no {what}", "bold red"),
            f" at {path.resolve()} (data directory {settings.listener.data_dir.resolve()});"
            " give the listener's configuration with --config or PYWATS_EVENTS_CONFIG, or --data-dir",
        )
    )
    raise typer.Exit(ExitCode.CONFIG)


def purge(count: int, what: str, remove: Callable[[], int], *, yes: bool, where: str = "") -> None:
    """The purge flow of every store: nothing to do is said so, the user is asked unless `yes`, and the
    number actually removed (`remove()`) is printed. `where` names a store away from this machine."""
    if not count:
        out.print("nothing to purge")
        return
    place = f" from {where}" if where else ""
    if not yes and not typer.confirm(f"delete {count} {what}{place}?"):
        raise typer.Exit(ExitCode.ERROR)
    out.print(f"purged {remove()} {what}{place}")


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


#: (typer app, command name, its path as `RunOption.commands` names it, implementation, parameter the
#: plugins' options follow) of every command that takes plugin options; the implementation takes
#: ``plugin_settings`` (dotted setting → value)
_EXTENSIBLE: list[tuple[typer.Typer, str, str, Callable[..., None], str]] = []


def extensible_command(
    group: typer.Typer, name: str, func: Callable[..., None], *, after: str, path: str | None = None
) -> None:
    """Registers `func` as command `name` of `group` (`path`: the full command, e.g. ``dlq replay``), to
    take the plugins' options too once `install_plugin_options` ran (see `RunOption.commands`)."""
    _EXTENSIBLE.append((group, name, path or name, func, after))
    group.command(name)(_with_options(func, name, (), after))


def install_plugin_options(options: Sequence[RunOption]) -> None:
    """Gives every extensible command the `options` meant for it (`RunOption.commands`)."""
    for group, name, path, func, after in _EXTENSIBLE:
        mine = [opt for opt in options if path in opt.commands]
        for info in group.registered_commands:
            if info.name == name:
                info.callback = _with_options(func, name, mine, after)


def _annotation(option: RunOption) -> Any:
    kind: Any = list[option.type] if option.repeatable else option.type  # type: ignore[name-defined]
    return Annotated[Optional[kind], typer.Option(option.flag, help=option.help)]  # noqa: UP045


def _with_options(
    func: Callable[..., None], name: str, options: Sequence[RunOption], after: str
) -> Callable[..., None]:
    """`func` as a typer callback taking `options` as well (after parameter `after`); their values reach
    `func` as ``plugin_settings``."""
    signature = inspect.signature(func, eval_str=True)
    params = [
        p.replace(kind=KEYWORD_ONLY) for p in signature.parameters.values() if p.name != "plugin_settings"
    ]
    taken = {p.name for p in params}
    extra: dict[str, RunOption] = {}
    for option in options:
        if option.param_name in taken:
            log.warning("option %s of a plugin clashes with an option of `%s`; left out", option.flag, name)
            continue
        taken.add(option.param_name)
        extra[option.param_name] = option
    at = next(i for i, p in enumerate(params) if p.name == after) + 1
    added = [Parameter(n, KEYWORD_ONLY, default=None, annotation=_annotation(o)) for n, o in extra.items()]
    params[at:at] = added

    @functools.wraps(func)
    def command(**kwargs: Any) -> None:
        values: dict[str, Any] = {}
        for param, option in extra.items():
            value = kwargs.pop(param)
            if value is not None and value != []:
                values[option.setting] = value
        func(**kwargs, plugin_settings=values)

    command.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    del command.__wrapped__  # typer reads the signature above, not `func`'s
    return command


def main() -> None:
    """Console-script entry point."""
    add_plugin_commands()
    try:
        sections = settings_sections()
    except ConfigurationError as exc:  # reported again, as a configuration error, by the command that loads
        log.warning("plugin options not available: %s", exc)
    else:
        install_plugin_options([opt for section in sections.values() for opt in section.run_options])
    app()
