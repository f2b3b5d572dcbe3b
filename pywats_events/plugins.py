r"""Plugin discovery: transports, codecs and handlers found through entry points.

Groups and what an entry point must name:

``pywats_events.codecs``
    A `Codec` class or factory; called with the options of ``[plugins.<name>]`` as keyword arguments.
    A factory may declare ``factory.message_types``: the input message names it maps → the event type
    (value) each becomes, for the generated mapping reference (`pywats_events.docgen`), and
    ``factory.input_types``: a function returning, for each message and structure it reads, its
    properties as (name, type in words) pairs.
``pywats_events.transports``
    ``factory(ctx: PluginContext) -> BaseTransport | list[BaseTransport] | None``. A `BaseTransport`
    subclass also works: it is called with the options of ``[plugins.<name>]`` (plus ``codec=`` if
    it takes one).
``pywats_events.handlers``
    ``factory(ctx: PluginContext) -> iterable of handlers`` (`BaseHandler` instances, ``@handler(...)``
    functions, or functions with an ``event_types`` attribute). ``ctx.options`` is the plugin's table
    ``[handlers.<name>]`` as a plain dict; `PluginContext.parse_options` validates it with a pydantic
    model and names a bad option. A `BaseHandler` subclass also works: it is instantiated with the
    options as keyword arguments. The factory runs once at start-up, before the bus starts (so before
    any ``on_start``); it appends coroutine functions that close what it opened to ``ctx.cleanups``
    (run after the bus drained and every ``on_stop`` ran). Any exception it raises stops the start-up
    with exit code 2: a `ConfigurationError` as raised, anything else as ``handlers.<name>: ...``.
    Give every handler a stable, unique `name` (see `BaseHandler`): journal progress and dead letters
    are recorded under it.
``pywats_events.samples``
    ``factory() -> iterable of (name, bytes)``: example messages for the codec of the same name, replayed
    by a run that is given no input (`pywats-events run` with no arguments).
``pywats_events.commands``
    A `typer.Typer` added to the `pywats-events` command line as subcommand ``<name>``.
``pywats_events.previews``
    ``factory() -> Preview`` (`pywats_events.previews`): an offline dry run of a handler plugin, so a tool
    that shows what a message becomes (the CFX explorer) can show what the handlers would send.
``pywats_events.settings``
    A `SettingsSection` (or a function returning one): the plugin's own configuration section, e.g.
    ``[amqp]`` from the CFX adapter and ``[wats]`` from the WATS handlers. Its pydantic `model` validates the
    section at start-up (an error names ``section.setting``); the environment sets it as
    ``PYWATS_EVENTS_<SECTION>_<NAME>`` like a core section; its `RunOption`\ s are options of
    `pywats-events run` (and of ``dlq replay`` where they say so) that set its settings. A section may name
    the transport plugin it feeds (`SettingsSection.transport`): that transport starts when the section's
    `SettingsSection.input` setting is set. Factories read it with ``ctx.settings.section(name, Model)``.

What a factory may give back through its `PluginContext`, besides handlers or transports: ``cleanups``
(run at shutdown), ``on_bus`` (told the bus before it starts, for handlers that publish), ``facts``
(lines of the run summary, e.g. the outbox path), ``summary`` (functions returning rows of the run
summary's table, e.g. requests by endpoint), ``destination`` (where its handlers deliver, shown by
``dlq replay``), ``console_panels`` (pages of the operator console, `pywats_events.console.ConsolePanel`,
e.g. the outbox with a retry button). ``registry`` is the listener's Prometheus registry: a plugin meters what
it does (e.g. its requests to WATS) by registering its own metrics there, served on ``/metrics``.
In distributed mode ``single_writers`` is set: work that one listener at a time must do (a call the far side
cannot tell apart when several processes make it at once) is declared there and submitted through the
function it returns (`pywats_events.single_writer`; the WATS handlers count asset usage so).

Installing a distribution that declares such entry points is all it takes for `pywats-events run` to find it.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

from ._exceptions import ConfigurationError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from ._codec import Codec
    from .bus import AsyncEventBus
    from .config import Settings
    from .console import ConsolePanel
    from .previews import Preview
    from .single_writer import SingleWriters
    from .transports import BaseTransport

__all__ = [
    "CODECS",
    "COMMANDS",
    "HANDLERS",
    "PREVIEWS",
    "SAMPLES",
    "SETTINGS",
    "TRANSPORTS",
    "PluginContext",
    "PluginInfo",
    "RunOption",
    "SettingsSection",
    "SummaryRows",
    "available",
    "broken_settings",
    "command_plugins",
    "inventory",
    "load",
    "load_samples",
    "make_handlers",
    "preview_factories",
    "settings_sections",
]

log = logging.getLogger("pywats_events.plugins")

_M = TypeVar("_M", bound=BaseModel)

TRANSPORTS = "pywats_events.transports"
CODECS = "pywats_events.codecs"
HANDLERS = "pywats_events.handlers"
SAMPLES = "pywats_events.samples"
COMMANDS = "pywats_events.commands"
PREVIEWS = "pywats_events.previews"
SETTINGS = "pywats_events.settings"
BROKER_DEAD_LETTERS = "pywats_events.broker_dead_letters"

#: the core's own plugins, used when the installed distribution metadata does not declare them (a source
#: checkout run without reinstalling). Entry points of the same name always win. Plugins of other packages
#: (the CFX codec and AMQP transport, the WATS handlers) are found through their entry points only.
_FIRST_PARTY: dict[str, dict[str, str]] = {
    TRANSPORTS: {
        "mock": "pywats_events.transports:MockTransport",
        "replay": "pywats_events.listener.builtin_transports:replay_transport",
        "mqtt": "pywats_events.listener.builtin_transports:mqtt_transport",
    },
    CODECS: {"event": "pywats_events.event_codec:EventJsonCodec"},
}


#: rows (what, value) a plugin adds to the run summary's table, computed when asked
SummaryRows = Callable[[], Iterable[tuple[str, str]]]


@dataclass(frozen=True)
class RunOption:
    """A command-line option a plugin contributes: ``--flag VALUE`` sets ``setting`` (``section.name``).

    ``RunOption("--wats-url", "wats.url", "WATS server.")``; `repeatable` options collect a list."""

    flag: str
    setting: str
    help: str
    type: type[Any] = str
    repeatable: bool = False
    #: the commands that take it: ``run``, and ``dlq replay`` for options that say where handlers deliver
    commands: tuple[str, ...] = ("run",)

    @property
    def param_name(self) -> str:
        """The Python parameter name of the option (``--wats-url`` → ``wats_url``)."""
        return self.flag.lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class SettingsSection:
    """A configuration section contributed by a plugin: ``[name]`` validated by `model`.

    `model` should forbid unknown keys (``extra="forbid"``) so a misspelt setting is refused by name."""

    name: str
    model: type[BaseModel]
    run_options: tuple[RunOption, ...] = ()
    #: the transport plugin this section configures, started when `input` is set (e.g. ``amqp``)
    transport: str | None = None
    #: the setting of this section whose value turns the transport on (e.g. ``url``)
    input: str | None = None


@dataclass
class PluginContext:
    """What a factory gets: the whole configuration, its own options, shared resources and a cleanup hook."""

    name: str
    settings: Settings
    options: dict[str, Any]
    codec: Codec | None = None
    #: the listener's Prometheus registry (served on /metrics): a plugin registers its own metrics here
    registry: CollectorRegistry | None = None
    #: async callables run at shutdown, after the bus drained (close sinks, connections)
    cleanups: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    #: free-form facts a plugin reports for the summary (e.g. {"outbox": "/path"})
    facts: dict[str, str] = field(default_factory=dict)
    #: functions returning rows for the run summary's table, called when the run ended
    summary: list[SummaryRows] = field(default_factory=list)
    #: where this plugin's handlers deliver (shown by ``dlq replay``), e.g. a server URL or a directory
    destination: str | None = None
    #: the settings table `options` came from (``handlers`` or ``plugins``), for error messages
    section: str = "handlers"
    #: called with the `AsyncEventBus` once it is built, before it starts: a plugin whose handlers publish
    #: events of their own (an alarm) keeps the bus here
    on_bus: list[Callable[[AsyncEventBus], None]] = field(default_factory=list)
    #: pages of the operator console (e.g. the outbox of the WATS handlers), see `pywats_events.console`
    console_panels: list[ConsolePanel] = field(default_factory=list)
    #: distributed mode: where a handler declares work that one listener at a time must do (see
    #: `pywats_events.single_writer`); None when the listener runs alone
    single_writers: SingleWriters | None = None

    def parse_options(self, model: type[_M]) -> _M:
        """`options` validated by a pydantic `model`; a bad or (with ``extra="forbid"``) unknown option is
        a `ConfigurationError` naming it, e.g. ``handlers.my_plugin.port``."""
        try:
            return model.model_validate(self.options)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in (self.section, self.name, *err["loc"]))
            raise ConfigurationError(where, err["msg"]) from None


def _entry_points(group: str) -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=group)}


def available(group: str) -> dict[str, str]:
    """name → target of every plugin in `group` (entry points over first-party defaults)."""
    found = dict(_FIRST_PARTY.get(group, {}))
    found.update({name: ep.value for name, ep in _entry_points(group).items()})
    return found


def _import(target: str) -> Any:
    module, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split(".") if attr else ():
        obj = getattr(obj, part)
    return obj


def load(group: str, name: str, *, setting: str) -> Any:
    """The object behind plugin `name`; a `ConfigurationError` on `setting` if missing or broken."""
    eps = _entry_points(group)
    try:
        if name in eps:
            return eps[name].load()
        if name in _FIRST_PARTY.get(group, {}):
            return _import(_FIRST_PARTY[group][name])
    except Exception as exc:  # ImportError, or any error raised while the plugin's module runs
        raise ConfigurationError(
            setting, f"plugin {name!r} ({group}) cannot be imported: {type(exc).__name__}: {exc}"
        ) from exc
    known = ", ".join(sorted(available(group))) or "none installed"
    raise ConfigurationError(setting, f"no plugin named {name!r} in {group} (available: {known})")


def _accepts(obj: Any, param: str) -> bool:
    try:
        return param in inspect.signature(obj).parameters
    except (TypeError, ValueError):
        return False


def make_codec(name: str, options: dict[str, Any], *, setting: str = "listener.codec") -> Codec:
    obj = load(CODECS, name, setting=setting)
    try:
        codec: Codec = obj(**options)
        return codec
    except TypeError as exc:
        raise ConfigurationError(f"plugins.{name}", f"bad codec options: {exc}") from exc


def make_transports(name: str, ctx: PluginContext, *, setting: str) -> list[BaseTransport]:
    from .transports import BaseTransport

    obj = load(TRANSPORTS, name, setting=setting)
    ctx.section = "plugins"
    if inspect.isclass(obj) and issubclass(obj, BaseTransport):
        kwargs = dict(ctx.options)
        if ctx.codec is not None and _accepts(obj, "codec"):
            kwargs["codec"] = ctx.codec
        made: Any = obj(**kwargs)
    else:
        made = obj(ctx)
    if made is None:
        return []
    return list(made) if isinstance(made, (list, tuple)) else [made]


def make_handlers(name: str, ctx: PluginContext, factory: Any = None) -> list[Any]:
    """The handlers of plugin `name`; any failure is a `ConfigurationError` naming ``handlers.<name>``.

    `factory` stands in for the installed entry point (a plugin's tests, run from its source tree)."""
    from ._handlers import BaseHandler

    obj = factory if factory is not None else load(HANDLERS, name, setting="listener.handlers")
    where = f"handlers.{name}"
    ctx.section = "handlers"
    try:
        made: Any = obj(**ctx.options) if inspect.isclass(obj) and issubclass(obj, BaseHandler) else obj(ctx)
    except ConfigurationError:
        raise
    except Exception as exc:
        log.debug("handler plugin %r failed", name, exc_info=True)
        raise ConfigurationError(
            where, f"handler plugin {name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    if made is None:
        return []
    if isinstance(made, (str, bytes, dict)) or not isinstance(made, Iterable):
        made = [made]
    return [_checked_handler(h, name, where) for h in made]


def _checked_handler(h: Any, plugin: str, where: str) -> Any:
    """`h` as a `BaseHandler` that subscribes to something, or a `ConfigurationError` naming the plugin."""
    from ._handlers import BaseHandler, FunctionHandler, resolve_event_types

    if not isinstance(h, BaseHandler):
        types = getattr(h, "event_types", None)
        if not callable(h):
            raise ConfigurationError(where, f"handler plugin {plugin!r} returned {h!r}, not a handler")
        if types is None:
            raise ConfigurationError(
                where,
                f"handler plugin {plugin!r} returned {h!r} without event_types; "
                "decorate it with @handler(EventType....)",
            )
        h = FunctionHandler(h, [types] if isinstance(types, str) else types)
    try:
        types = resolve_event_types(h)
    except Exception as exc:
        raise ConfigurationError(
            where, f"handler {h.name!r} of plugin {plugin!r} has no usable event_types: {exc!r}"
        ) from exc
    if not types:
        raise ConfigurationError(
            where, f"handler {h.name!r} of plugin {plugin!r} subscribes to no event type"
        )
    return h


#: settings plugins that could not be loaded: name → reason (filled by `settings_sections`)
_BROKEN_SECTIONS: dict[str, str] = {}


def settings_sections() -> dict[str, SettingsSection]:
    """name → `SettingsSection` of every ``pywats_events.settings`` plugin that loads.

    One that cannot be loaded is left out with a warning, so it does not take down a listener that does not
    use it; a configuration that sets its section is refused naming the section and the reason
    (`broken_settings`)."""
    found: dict[str, SettingsSection] = {}
    for name, ep in sorted(_entry_points(SETTINGS).items()):
        try:
            made = ep.load()
            section = made if isinstance(made, SettingsSection) else made()
        except Exception as exc:
            reason = f"settings plugin {name!r} ({ep.value}) cannot be loaded: {type(exc).__name__}: {exc}"
        else:
            if isinstance(section, SettingsSection) and section.name == name:
                found[name] = section
                _BROKEN_SECTIONS.pop(name, None)
                continue
            reason = f"settings plugin {name!r} ({ep.value}) gave {section!r}, not SettingsSection({name!r})"
        if _BROKEN_SECTIONS.get(name) != reason:
            log.warning("%s; its section [%s] cannot be used", reason, name)
        _BROKEN_SECTIONS[name] = reason
    return found


def broken_settings() -> dict[str, str]:
    """Settings plugins the last `settings_sections` call could not load: section name → reason."""
    return dict(_BROKEN_SECTIONS)


def load_samples(codec_name: str) -> list[tuple[str, bytes]]:
    """The example messages the `codec_name` plugin ships (``pywats_events.samples``), or none."""
    ep = _entry_points(SAMPLES).get(codec_name)
    if ep is None:
        return []
    try:
        return [(str(name), bytes(body)) for name, body in ep.load()()]
    except Exception as exc:
        raise ConfigurationError(
            "listener.codec", f"samples of codec plugin {codec_name!r} cannot be loaded: {exc}"
        ) from exc


def command_plugins() -> dict[str, Any]:
    """name → `typer.Typer` of every ``pywats_events.commands`` plugin that loads; broken ones are logged."""
    found: dict[str, Any] = {}
    for name, ep in sorted(_entry_points(COMMANDS).items()):
        try:
            found[name] = ep.load()
        except Exception as exc:
            log.warning("command plugin %r (%s) cannot be loaded: %s", name, ep.value, exc)
    return found


def preview_factories() -> dict[str, Callable[[], Preview]]:
    """name → a callable that imports the ``pywats_events.previews`` plugin and builds its `Preview`.

    Nothing is imported until a callable is called; it raises whatever the import or the factory raises
    (a `TypeError` when the factory returns no `Preview`), so a caller can show the reason and go on.
    """
    found = sorted(_entry_points(PREVIEWS).items())
    return {name: functools.partial(_make_preview, ep) for name, ep in found}


def _make_preview(ep: EntryPoint) -> Preview:
    from .previews import Preview

    made = ep.load()()
    if not isinstance(made, Preview):
        raise TypeError(f"preview plugin {ep.name!r} ({ep.value}) returned {made!r}, not a Preview")
    return made


#: the groups `inventory` lists, in the order `pywats-events plugins` shows them
GROUPS: tuple[str, ...] = (
    TRANSPORTS,
    CODECS,
    HANDLERS,
    COMMANDS,
    SETTINGS,
    PREVIEWS,
    SAMPLES,
    BROKER_DEAD_LETTERS,
)


@dataclass(frozen=True)
class PluginInfo:
    """One installed plugin as `pywats-events plugins` lists it; `error` is why it cannot be imported."""

    group: str
    name: str
    target: str
    distribution: str
    version: str
    event_types: tuple[str, ...] = ()
    options_model: str = ""
    error: str = ""

    @property
    def kind(self) -> str:
        """The group without its ``pywats_events.`` prefix (``handlers``, ``codecs``, ...)."""
        return self.group.rpartition(".")[2]


def _qualname(obj: Any) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


def _describe(group: str, obj: Any) -> tuple[tuple[str, ...], str]:
    """(event types, options model) a loaded plugin declares.

    A handler factory declares them as attributes: ``factory.event_types`` and ``factory.options_model``
    (a `BaseHandler` class target: its class attribute `event_types`); a settings plugin's model is its
    section's."""
    from ._handlers import BaseHandler

    types: Any = getattr(obj, "event_types", ())
    if inspect.isclass(obj) and issubclass(obj, BaseHandler) and not isinstance(types, (list, tuple)):
        types = ()
    if callable(types) or isinstance(types, property):
        types = ()
    if isinstance(types, str):
        types = (types,)
    names = tuple(t.value if hasattr(t, "value") else str(t) for t in types)
    model: Any = getattr(obj, "options_model", None)
    if group == SETTINGS:
        section = obj if isinstance(obj, SettingsSection) else None
        model = section.model if section is not None else model
    return names, _qualname(model) if inspect.isclass(model) else ""


def inventory(groups: Iterable[str] = GROUPS) -> list[PluginInfo]:
    """Every installed plugin of `groups`, each imported to show what it declares; one that fails to
    import is listed with the reason (nothing is raised)."""
    found: list[PluginInfo] = []
    for group in groups:
        eps = _entry_points(group)
        names = sorted({*eps, *_FIRST_PARTY.get(group, {})})
        for name in names:
            ep = eps.get(name)
            target = ep.value if ep is not None else _FIRST_PARTY[group][name]
            dist = getattr(ep, "dist", None) if ep is not None else None
            dist_name = dist.metadata["Name"] if dist is not None else "pywats-events (source checkout)"
            version = dist.version if dist is not None else ""
            try:
                obj = ep.load() if ep is not None else _import(target)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                found.append(PluginInfo(group, name, target, dist_name, version, error=error))
                continue
            types, model = _describe(group, obj)
            found.append(PluginInfo(group, name, target, dist_name, version, types, model))
    return found
