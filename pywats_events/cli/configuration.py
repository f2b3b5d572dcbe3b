"""`pywats-events config check|show` and `--version`: what configuration a command would use, and whether
it can work, before anything runs.

`check` exits 0 when the settings are valid, every plugin they name can be loaded and every endpoint they
name (``*.url``: brokers, WATS) accepts a TCP connection; 2 (`ExitCode.CONFIG`) for a configuration
mistake; 1 (`ExitCode.ERROR`) when an endpoint cannot be reached.
"""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterator
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer
from pydantic import BaseModel, SecretStr
from rich.table import Table
from rich.text import Text

from .. import plugins
from .._exceptions import ConfigurationError
from ..config import Settings, discover_config, load_settings, setting_sources
from ..exit_codes import ExitCode
from ..logging_setup import redact
from .app import ConfigOpt, DataDirOpt, JsonOpt, app, base_overrides, err, fail_config, out

__all__ = ["config_app", "endpoints", "version_callback"]

config_app = typer.Typer(help="Check or show the configuration commands use.", no_args_is_help=True)
app.add_typer(config_app, name="config")

#: port of a URL scheme when the URL names none
_DEFAULT_PORTS = {
    "amqp": 5672,
    "amqps": 5671,
    "mqtt": 1883,
    "tcp": 1883,
    "mqtts": 8883,
    "ssl": 8883,
    "http": 80,
    "https": 443,
}
#: option names whose values are shown masked even in plugin tables (no model says they are secret)
_SECRET_NAMES = ("password", "token", "secret", "key")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pywats-events")
    except PackageNotFoundError:  # pragma: no cover - a source tree without metadata
        from .. import __version__

        return __version__


def version_callback(value: bool) -> None:
    if value:
        out.print(f"pywats-events {_version()}")
        raise typer.Exit(ExitCode.OK)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=version_callback, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Factory listener: CFX / MQTT traffic → events → WATS. Try `pywats-events run` on the samples."""


def _load(config: Any, overrides: dict[str, Any]) -> tuple[Settings, Any]:
    location = discover_config(config)
    err.print(f"config: {location.describe()}")
    try:
        settings = load_settings(location.path, overrides=overrides)
    except ConfigurationError as exc:
        raise fail_config(exc) from None
    err.print(f"data directory: {settings.listener.data_dir.resolve()}")
    return settings, location


def endpoints(settings: Settings) -> Iterator[tuple[str, str, str, int]]:
    """(setting, URL without credentials, host, port) of every URL setting of every section (``url`` or
    ``*_url``) that is set: the brokers and servers the listener would connect to."""
    for name in type(settings).model_fields:
        section = getattr(settings, name)
        if not isinstance(section, BaseModel):
            continue
        for field, value in dict(section).items():
            if not (field == "url" or field.endswith("_url")) or value is None:
                continue
            raw = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
            parts = urlsplit(raw)
            if not parts.hostname:
                continue
            try:
                port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower(), 0)
            except ValueError:
                port = 0
            shown = f"{parts.scheme}://{parts.hostname}:{port}"
            yield f"{name}.{field}", shown, parts.hostname, port


def _reach(host: str, port: int, timeout: float) -> str | None:
    """None when `host`:`port` accepts a TCP connection within `timeout`, else why not."""
    if not port:
        return "no port (unknown URL scheme)"
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def _check_plugins(settings: Settings) -> list[str]:
    """Loads every plugin the settings name (without building anything); the names checked."""
    from ..listener import check_plugin_tables

    check_plugin_tables(settings)
    s = settings.listener
    checked = [f"codec {s.codec}"]
    plugins.load(plugins.CODECS, s.codec, setting="listener.codec")
    for name in s.handlers:
        plugins.load(plugins.HANDLERS, name, setting="listener.handlers")
        checked.append(f"handlers {name}")
    for name, setting in [*settings.inputs(), *((t, "listener.transports") for t in s.transports)]:
        plugins.load(plugins.TRANSPORTS, name, setting=setting)
        checked.append(f"transport {name}")
    return checked


@config_app.command("check")
def config_check(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each endpoint.")] = 5.0,
) -> None:
    """Validate the settings, load the plugins they name, and try to reach every broker and server.

    Exit 0: all good; 2: a configuration mistake (named); 1: an endpoint cannot be reached."""
    settings, _ = _load(config, base_overrides(data_dir))
    out.print("ok    settings are valid")
    try:
        for what in _check_plugins(settings):
            out.print(f"ok    plugin {what}")
    except ConfigurationError as exc:
        raise fail_config(exc) from None
    unreachable = 0
    for setting, shown, host, port in endpoints(settings):
        problem = _reach(host, port, timeout)
        if problem is None:
            out.print(f"ok    {setting}: {shown} reachable")
        else:
            unreachable += 1
            out.print(Text.assemble(("FAIL", "bold red"), f"  {setting}: {shown} unreachable: {problem}"))
    if unreachable:
        err.print(f"{unreachable} endpoint(s) cannot be reached")
        raise typer.Exit(ExitCode.ERROR)


def _shown(name: str, value: Any) -> Any:
    if isinstance(value, SecretStr):
        secret = value.get_secret_value()
        return redact(secret) if "://" in secret else "********"
    if isinstance(value, str):
        if value and any(word in name.rsplit(".", 1)[-1].lower() for word in _SECRET_NAMES):
            return "********"
        return redact(value)
    if isinstance(value, (list, tuple)):
        return [_shown(name, v) for v in value]
    if isinstance(value, dict):
        return {k: _shown(f"{name}.{k}", v) for k, v in value.items()}
    return value if value is None or isinstance(value, (bool, int, float)) else str(value)


def _flat(data: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in data.items():
        if isinstance(value, dict) and value:
            yield from _flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


@config_app.command("show")
def config_show(config: ConfigOpt = None, data_dir: DataDirOpt = None, as_json: JsonOpt = False) -> None:
    """The effective settings, secrets masked, each with where its value comes from (default, file,
    environment, command line)."""
    overrides = base_overrides(data_dir)
    settings, location = _load(config, overrides)
    sources = setting_sources(settings, location.path, overrides)
    rows = [
        (name, _shown(name, value), sources.get(name, "default")) for name, value in _flat(_dump(settings))
    ]
    if as_json:
        for name, value, source in rows:
            sys.stdout.write(json.dumps({"setting": name, "value": value, "source": source}) + "\n")
        return
    table = Table(title=f"effective settings ({location.describe()})")
    for col in ("setting", "value", "source"):
        table.add_column(col)
    for name, value, source in rows:
        table.add_row(name, json.dumps(value, default=str), source)
    out.print(table)


def _dump(settings: Settings) -> dict[str, Any]:
    """Settings as nested dicts, keeping `SecretStr` values (to mask them) instead of pydantic's text."""
    return {
        name: dict(getattr(settings, name)) if isinstance(getattr(settings, name), BaseModel) else value
        for name, value in ((n, getattr(settings, n)) for n in type(settings).model_fields)
    }
