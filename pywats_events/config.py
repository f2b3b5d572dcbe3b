"""Listener settings: defaults < TOML file < environment (PYWATS_EVENTS_<SECTION>_<FIELD>) < CLI options.

Every setting has a dotted name (``mqtt.url``); invalid values fail at start-up with a `ConfigurationError`
naming that setting. Secrets are `SecretStr` so they never reach logs or `repr`.

The core's sections are ``[listener]``, ``[journal]``, ``[quarantine]``, ``[bus]``, ``[replay]`` and
``[mqtt]``; plugins add theirs through ``pywats_events.settings`` entry points (``[amqp]`` from the CFX
adapter, ``[wats]`` from the WATS handlers): `load_settings` builds a `Settings` subclass holding every
installed plugin's section (`settings_model`), validated, refused when unknown and set from the
environment exactly like the core's.

Plugin options (``[handlers.<name>]``, ``[plugins.<name>]``) have no fixed names, so their environment
names separate the levels with a double underscore: ``PYWATS_EVENTS_HANDLERS__FAILJSON__DESTINATIONS``
→ ``handlers.failjson.destinations`` (names are lower-cased; a value starting with ``[`` or ``{`` is
JSON, anything else a string the plugin's own option model converts).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, create_model, field_validator

from ._exceptions import ConfigurationError

if TYPE_CHECKING:
    from .plugins import SettingsSection

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG_PATH",
    "ENV_PREFIX",
    "BusSettings",
    "ConfigLocation",
    "ConsoleSettings",
    "JournalSettings",
    "ListenerSettings",
    "MqttSettings",
    "QuarantineSettings",
    "ReplaySettings",
    "Settings",
    "check_url_scheme",
    "discover_config",
    "load_settings",
    "setting_sources",
    "settings_model",
]

ENV_PREFIX = "PYWATS_EVENTS_"
#: the environment variable naming the configuration file when ``--config`` is not given
CONFIG_ENV = "PYWATS_EVENTS_CONFIG"
#: the configuration file of an installed service, used when neither ``--config`` nor `CONFIG_ENV` is set
DEFAULT_CONFIG_PATH = Path("/etc/pywats-events/listener.toml")

_M = TypeVar("_M", bound=BaseModel)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ListenerSettings(_Section):
    #: where journal, DLQ, quarantine, outbox and the status snapshot live
    data_dir: Path = Path("pywats-data")
    #: stop after this many inbound messages (0 = no limit)
    max_messages: int = Field(0, ge=0)
    #: stop after this many seconds without input (0 = never)
    idle_exit: float = Field(0.0, ge=0)
    #: how long SIGINT/SIGTERM waits for in-flight work before exiting, and how long a run whose input
    #: ended (replay, max_messages, idle_exit) keeps delivering what its journal holds
    drain_timeout: float = Field(30.0, gt=0)
    log_json: bool = False
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: /healthz, /readyz and /metrics (0 = off)
    metrics_port: int = Field(0, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    #: codec name (entry point group pywats_events.codecs)
    codec: str = "cfx"
    #: handler plugin names (entry point group pywats_events.handlers)
    handlers: list[str] = Field(default_factory=lambda: ["wats"])
    #: extra transport plugins to start (entry point group pywats_events.transports)
    transports: list[str] = Field(default_factory=list)
    #: live progress line on a terminal
    progress: bool = True
    #: several listener processes share the broker's queues (docs/deployment.md): no journal, a broker
    #: message is settled only after the handlers finished (acknowledged, handed to a delay queue for a
    #: later attempt, or dead-lettered on the broker), so nothing waits on one machine's disk
    distributed: bool = False

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v

    @field_validator("handlers", "transports")
    @classmethod
    def _no_duplicates(cls, v: list[str]) -> list[str]:
        # a plugin listed twice would subscribe its handlers twice (each event handled twice)
        seen: set[str] = set()
        for name in v:
            if name in seen:
                raise ValueError(f"{name!r} is listed twice")
            seen.add(name)
        return v


class JournalSettings(_Section):
    enabled: bool = True
    path: Path | None = None
    max_entries: int = Field(1_000_000, gt=0)
    max_bytes: int = Field(1024**3, gt=0)
    #: seconds completed entries are kept
    retention: float = Field(3600.0, ge=0)
    synchronous: Literal["FULL", "NORMAL"] = "FULL"


class QuarantineSettings(_Section):
    """``[quarantine]``: how much undecodable input is kept. Past either limit the oldest entries are
    dropped, with a warning and ``pywats_quarantine_evicted_total``: a flood of bad input must not fill
    the disk of the machine that also holds the journal."""

    max_entries: int = Field(100_000, gt=0)
    max_bytes: int = Field(512 * 1024**2, gt=0)


class BusSettings(_Section):
    max_in_flight: int = Field(1000, gt=0)
    max_concurrency: int = Field(32, gt=0)


class ConsoleSettings(_Section):
    """The operator console, served with /healthz, /readyz and /metrics on ``listener.metrics_port``."""

    enabled: bool = True
    #: a file holding the token that state-changing actions need (else ``PYWATS_EVENTS_CONSOLE_TOKEN``);
    #: without one the console is read-only, and it refuses to listen on a non-loopback address
    token_file: Path | None = None
    token: SecretStr | None = None


class ReplaySettings(_Section):
    #: files, directories or JSON-lines captures; empty with no other input = bundled samples
    paths: list[Path] = Field(default_factory=list)
    #: messages per second (0 = as fast as accepted)
    rate: float = Field(0.0, ge=0)
    #: replay the bundled CFX samples when no input is configured
    samples_by_default: bool = True


def check_url_scheme(url: SecretStr | None, schemes: tuple[str, ...], example: str) -> SecretStr | None:
    """A field validator's check of a broker URL: a `ValueError` at load time (so the error names the
    setting) that never echoes the URL, which may hold a password."""
    if url is None:
        return None
    value = url.get_secret_value().strip()
    if not value:
        return None
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.lower() not in schemes or not rest.split("@")[-1].split("/")[0]:
        raise ValueError(f"expected {example} (scheme {' or '.join(schemes)})")
    return url


class MqttSettings(_Section):
    url: SecretStr | None = None
    #: MQTT protocol version: "3.1.1" or "5"
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    #: topic filters read with the listener's codec (``cfx/#`` when neither these nor subscriptions are set)
    topics: list[str] = Field(default_factory=list)
    #: ``[[mqtt.subscriptions]]`` tables: topic or template, codec, message_name, event_type, fields, qos
    subscriptions: list[dict[str, Any]] = Field(default_factory=list)
    qos: int = Field(1, ge=0, le=2)
    #: stable id the broker keys our persistent session by (default ``pywats-events-<host name>``)
    client_id: str | None = None
    #: keep subscriptions and unacknowledged messages on the broker while the listener is down
    persistent_session: bool = True
    #: MQTT 5: seconds the broker keeps the session after a disconnect
    session_expiry: int = Field(7 * 24 * 3600, ge=0)
    #: instead of (or to override) the credentials in the URL
    username: str | None = None
    password: SecretStr | None = None
    #: TLS: CA bundle, client certificate and key (PEM); TLS is on with an mqtts:// URL
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @field_validator("url")
    @classmethod
    def _mqtt_url(cls, v: SecretStr | None) -> SecretStr | None:
        return check_url_scheme(
            v,
            ("mqtt", "mqtts", "tcp", "ssl"),
            "mqtt://host[:port], credentials as user:password@ before the host",
        )


class Settings(_Section):
    """The core's sections; `settings_model` derives the class that also holds the plugins' sections."""

    #: the plugin sections this class holds: name → `SettingsSection` (see `settings_model`)
    contributed: ClassVar[Mapping[str, SettingsSection]] = {}

    listener: ListenerSettings = Field(default_factory=ListenerSettings)
    journal: JournalSettings = Field(default_factory=JournalSettings)
    quarantine: QuarantineSettings = Field(default_factory=QuarantineSettings)
    bus: BusSettings = Field(default_factory=BusSettings)
    replay: ReplaySettings = Field(default_factory=ReplaySettings)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    #: options per handler plugin (``[handlers.wats]`` → the WATS handlers' own settings)
    handlers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    #: options per codec/transport plugin (``[plugins.amqp]`` → extra AMQPConfig fields)
    plugins: dict[str, dict[str, Any]] = Field(default_factory=dict)

    def section(self, name: str, model: type[_M]) -> _M:
        """The plugin section `name` as a `model` instance: ``ctx.settings.section("wats", WatsSettings)``.

        Settings built without that section (a plain `Settings()`) give the model's defaults."""
        value = getattr(self, name, None) if name in type(self).model_fields else None
        if value is None:
            return model()
        if not isinstance(value, model):
            raise TypeError(f"settings section {name!r} is a {type(value).__name__}, not a {model.__name__}")
        return value

    def inputs(self) -> list[tuple[str, str]]:
        """(transport plugin, setting) of every configured input besides replay: each plugin section whose
        input setting is set (e.g. ``("amqp", "amqp.url")``), then ``("mqtt", "mqtt.url")``."""
        found: list[tuple[str, str]] = []
        for name, spec in sorted(self.contributed.items()):
            if spec.transport and spec.input and getattr(getattr(self, name, None), spec.input, None):
                found.append((spec.transport, f"{name}.{spec.input}"))
        if self.mqtt.url is not None:
            found.append(("mqtt", "mqtt.url"))
        return found

    # derived paths
    def path_for(self, name: str) -> Path:
        return self.listener.data_dir / name

    @property
    def journal_path(self) -> Path:
        return self.journal.path or self.path_for("journal.db")

    @property
    def dlq_path(self) -> Path:
        return self.path_for("dlq.db")

    @property
    def quarantine_path(self) -> Path:
        return self.path_for("quarantine.db")

    @property
    def status_path(self) -> Path:
        return self.path_for("status.json")

    @property
    def has_input(self) -> bool:
        return bool(self.replay.paths or self.inputs())


@dataclass(frozen=True)
class ConfigLocation:
    """The configuration file a command uses (None: defaults and environment only) and how it was found."""

    path: Path | None
    #: ``--config``, ``PYWATS_EVENTS_CONFIG``, ``default path`` or ``none``
    source: str

    def describe(self) -> str:
        if self.path is None:
            return f"none (no --config, no {CONFIG_ENV}, no {DEFAULT_CONFIG_PATH})"
        return f"{self.path.resolve()} (from {self.source})"


def discover_config(
    explicit: Path | None, environ: Mapping[str, str] | None = None, default: Path = DEFAULT_CONFIG_PATH
) -> ConfigLocation:
    """``--config``, else `CONFIG_ENV`, else `default` when that file exists.

    A file named by ``--config`` or the environment must exist (loading it fails otherwise); the default
    path is only a fallback, so a trial run on a machine without a service configuration still works."""
    env = os.environ if environ is None else environ
    if explicit is not None:
        return ConfigLocation(explicit, "--config")
    named = env.get(CONFIG_ENV, "").strip()
    if named:
        return ConfigLocation(Path(named), CONFIG_ENV)
    if default.is_file():
        return ConfigLocation(default, "default path")
    return ConfigLocation(None, "none")


_MODELS: dict[tuple[SettingsSection, ...], type[Settings]] = {}


def settings_model(sections: Mapping[str, SettingsSection]) -> type[Settings]:
    """The `Settings` subclass that also holds `sections` (one class per set of sections)."""
    key = tuple(sections[name] for name in sorted(sections))
    model = _MODELS.get(key)
    if model is None:
        if not key:
            return Settings
        fields: dict[str, Any] = {}
        for spec in key:
            if spec.name in Settings.model_fields:
                raise ConfigurationError(spec.name, "a plugin section cannot replace a section of the core")
            fields[spec.name] = (spec.model, Field(default_factory=spec.model))
        model = create_model("Settings", __base__=Settings, **fields)
        model.contributed = {spec.name: spec for spec in key}
        _MODELS[key] = model
    return model


def _sections(model: type[Settings]) -> dict[str, type[BaseModel]]:
    """name → model of every section (not the plugin tables) of a settings class, longest name first."""
    found = {
        name: field.annotation
        for name, field in model.model_fields.items()
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
    }
    return dict(sorted(found.items(), key=lambda item: -len(item[0])))


def _setting_names(model: type[BaseModel]) -> dict[str, str]:
    """The names a section's settings are written with (a field's alias, else its name) → field name."""
    names: dict[str, str] = {}
    for name, field in model.model_fields.items():
        alias = field.validation_alias if isinstance(field.validation_alias, str) else field.alias
        names[alias or name] = name
    return names


def _env_value(raw: str, annotation: Any) -> Any:
    """Lists from env: JSON array or comma-separated."""
    text = str(annotation)
    if text.startswith("list[") or "list[" in text:
        stripped = raw.strip()
        if stripped.startswith("["):
            return json.loads(stripped)
        return [p.strip() for p in stripped.split(",") if p.strip()]
    return raw


#: settings tables keyed by plugin name: their environment names nest with "__"
_PLUGIN_TABLES = ("handlers", "plugins")
_TABLE_KIND = {"handlers": "handler plugin", "plugins": "codec and transport plugin"}


def _plugin_env(key: str, rest: str, raw: str) -> tuple[str, list[str], Any]:
    """PYWATS_EVENTS_HANDLERS__<NAME>__<OPTION>[__<SUB>...] → ("handlers", [name, option, ...], value)."""
    table = rest.split("_", 1)[0]
    parts = rest[len(table) + 2 :].split("__") if rest.startswith(table + "__") else []
    if len(parts) < 2 or not all(parts):
        raise ConfigurationError(
            key,
            f"unknown setting: {_TABLE_KIND[table]} options are set by environment as"
            f" {ENV_PREFIX}{table.upper()}__<NAME>__<OPTION> (double underscores between the levels)",
        )
    stripped = raw.strip()
    value: Any = raw
    if stripped.startswith(("[", "{")):
        try:
            value = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(".".join((table, *parts)), f"invalid JSON in {key}") from exc
    return table, parts, value


def env_overrides(environ: Mapping[str, str], model: type[Settings] = Settings) -> dict[str, dict[str, Any]]:
    """PYWATS_EVENTS_AMQP_URL → {"amqp": {"url": ...}}, PYWATS_EVENTS_HANDLERS__WATS__X → {"handlers":
    {"wats": {"x": ...}}}; unknown PYWATS_EVENTS_* names are errors."""
    out: dict[str, dict[str, Any]] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX) or key == CONFIG_ENV:
            continue
        rest = key[len(ENV_PREFIX) :].lower()
        if rest.split("_", 1)[0] in _PLUGIN_TABLES:
            table, parts, value = _plugin_env(key, rest, raw)
            node = out.setdefault(table, {})
            for part in parts[:-1]:
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    raise ConfigurationError(
                        ".".join((table, *parts)), f"{key} conflicts with another variable"
                    )
                node = child
            node[parts[-1]] = value
            continue
        sections = _sections(model)
        for section, section_model in sections.items():
            if rest.startswith(section + "_"):
                name = rest[len(section) + 1 :]
                names = _setting_names(section_model)
                if name not in names:
                    raise ConfigurationError(f"{section}.{name}", f"unknown setting (from environment {key})")
                try:
                    value = _env_value(raw, section_model.model_fields[names[name]].annotation)
                except json.JSONDecodeError as exc:
                    raise ConfigurationError(f"{section}.{name}", f"invalid JSON list in {key}") from exc
                out.setdefault(section, {})[name] = value
                break
        else:
            known = ", ".join(s.upper() for s in model.model_fields if s in sections)
            raise ConfigurationError(
                key,
                f"unknown setting: environment names are {ENV_PREFIX}<SECTION>_<NAME>"
                f" with SECTION one of {known}, or {ENV_PREFIX}HANDLERS__<NAME>__<OPTION> and"
                f" {ENV_PREFIX}PLUGINS__<NAME>__<OPTION> for plugin options",
            )
    return out


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    result = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(result.get(k), Mapping):
            result[k] = _merge(dict(result[k]), v)
        else:
            result[k] = v
    return result


def _setting_name(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "config"


def load_settings(
    config_file: Path | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    sections: Mapping[str, SettingsSection] | None = None,
) -> Settings:
    """Builds the settings; raises `ConfigurationError` naming the first bad setting.

    `sections` are the plugin sections to accept besides the core's; by default those of every installed
    ``pywats_events.settings`` plugin (`pywats_events.plugins.settings_sections`)."""
    if sections is None:
        from .plugins import settings_sections

        sections = settings_sections()
    model = settings_model(sections)
    data = _read_toml(config_file)
    data = _merge(data, env_overrides(os.environ if environ is None else environ, model))
    if overrides:
        data = _merge(data, overrides)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        if err["type"] == "extra_forbidden" and len(err["loc"]) == 1:
            from .plugins import broken_settings

            reason = broken_settings().get(str(err["loc"][0]))
            if reason is not None:  # the section of an installed plugin that cannot be loaded
                raise ConfigurationError(str(err["loc"][0]), reason) from exc
        raise ConfigurationError(_setting_name(err["loc"]), _message(err, model)) from exc


def _read_toml(config_file: Path | None) -> dict[str, Any]:
    if config_file is None:
        return {}
    try:
        return tomllib.loads(Path(config_file).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError("--config", f"cannot read {config_file}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError("--config", f"{config_file} is not valid TOML: {exc}") from exc


def _dotted(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested tables → {"section.name": value}; plugin tables keep their nesting down to the option."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_dotted(value, name + "."))
        else:
            flat[name] = value
    return flat


def setting_sources(
    settings: Settings,
    config_file: Path | None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Dotted setting → where its effective value comes from: ``default``, ``file``, ``environment`` or
    ``command line`` (the highest layer that sets it, as `load_settings` merges them)."""
    layers = [
        ("file", _dotted(_read_toml(config_file))),
        ("environment", _dotted(env_overrides(os.environ if environ is None else environ, type(settings)))),
        ("command line", _dotted(overrides or {})),
    ]
    sources: dict[str, str] = {}
    for name in _dotted(settings.model_dump()):
        sources[name] = "default"
        for layer, values in layers:
            if name in values or any(v.startswith(name + ".") for v in values):
                sources[name] = layer
    return sources


def _is_model(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, BaseModel)


def _message(err: Any, settings_model: type[Settings] = Settings) -> str:
    """pydantic's message, minus its "Value error, " prefix; an unknown name says which names exist."""
    if err["type"] == "extra_forbidden":
        loc = err["loc"]
        model: Any = settings_model
        for part in loc[:-1]:
            names = _setting_names(model) if _is_model(model) else {}
            field = model.model_fields.get(names.get(part, part)) if _is_model(model) else None
            model = field.annotation if field is not None else None
        if _is_model(model):
            return f"unknown setting (known: {', '.join(_setting_names(model))})"
        return "unknown setting"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")
