"""Entry-point targets plugging the WATS handlers into `pywats-events run` (see `pywats_events.plugins`).

``pywats_events.handlers: wats`` → `wats_handlers` (and ``pywats_events.settings: wats`` →
`handlers.settings.WATS_SECTION`). The core finds them by name only, exactly as it finds a third-party
plugin; nothing in the core imports this package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pywats_events import ConfigurationError
from pywats_events.logging_setup import register_secret
from pywats_events.plugins import PluginContext

from .asset import AssetHandler
from .config import WatsHandlersConfig
from .factory import create_handlers
from .metrics import MeteredSink, RequestMeter
from .settings import outbox_path, wats_settings

__all__ = ["DEMO_WATS_SETTINGS", "outbox_file", "wats_handlers", "wats_sink"]

#: WATS handler settings matching the bundled CFX samples' line (used only by the no-argument run)
DEMO_WATS_SETTINGS: dict[str, Any] = {
    "location": "Demo plant / Line 1",
    "products": [{"recipe": "MB-4471*", "part_number": "MB-4471", "revision": "C"}],
    "default_part_number": "MB-4471",
    "default_revision": "C",
    "asset_serial_from_handle": True,
    "asset_ids": {
        "REFLOW-L1-01": "4f1c2a9e-0000-4000-8000-000000000001",
        "SMT-L1-03": "4f1c2a9e-0000-4000-8000-000000000003",
    },
    "processes": {"ICT": 30, "FCT": 40, "AOI": 20, "SPI": 15},
    "default_process_code": 10,
}


def outbox_file(directory: Path) -> Path:
    """`--outbox DIR` names a directory; the store is one SQLite file inside it."""
    return directory / "outbox.db" if directory.suffix != ".db" else directory


def _sink(ctx: PluginContext) -> Any:
    wats = wats_settings(ctx.settings)
    if wats.url:
        from .wats.sender import HttpSender

        token = wats.resolved_token()
        if not token:
            raise ConfigurationError("wats.token", "no WATS token: set WATS_AUTH_TOKEN or --token-file")
        ctx.facts["wats"] = ctx.destination = wats.url
        return HttpSender(
            wats.url,
            token,
            timeout=wats.timeout,
            rate_limit_per_minute=wats.rate_limit_per_minute,
            max_connections=wats.max_connections,
        )
    from .wats.outbox import Outbox
    from .wats.outbox_panel import outbox_panel

    path = outbox_file(outbox_path(ctx.settings))
    ctx.facts["outbox"] = ctx.destination = str(path)
    outbox = Outbox(path)
    ctx.console_panels.append(outbox_panel(outbox))
    return outbox


class _Lease:
    """One sink per listener settings, shared by every plugin that writes to WATS; closed by the last."""

    def __init__(self, settings: Any, sink: Any) -> None:
        self.settings = settings
        self.sink = sink
        self.users = 0
        #: what building the sink told the run summary (server or outbox), told every user
        self.facts: dict[str, str] = {}
        self.destination: str | None = None


_LEASES: dict[int, _Lease] = {}


def wats_sink(ctx: PluginContext) -> Any:
    """The `RequestSink` ``[wats]`` describes (the HTTP sender, else the outbox), shared by the WATS handlers
    and any other plugin of the same run, so what a plugin sends to WATS goes through the same outbox, rate
    limit and connection pool. Give the handlers that use it a `TransientError`-aware policy (the sink raises
    `WatsTransientError` for outages, `WatsPermanentError` for refusals). Closed when the last user's
    cleanup ran (appended to ``ctx.cleanups`` here)."""
    key = id(ctx.settings)
    lease = _LEASES.get(key)
    if lease is None or lease.settings is not ctx.settings:
        lease = _LEASES[key] = _Lease(ctx.settings, _sink(ctx))
        lease.facts = {k: v for k, v in ctx.facts.items() if k in ("wats", "outbox")}
        lease.destination = ctx.destination
    ctx.facts.update(lease.facts)
    ctx.destination = ctx.destination or lease.destination
    lease.users += 1

    async def release() -> None:
        lease.users -= 1
        if lease.users == 0:
            if _LEASES.get(key) is lease:
                del _LEASES[key]
            await lease.sink.aclose()

    ctx.cleanups.append(release)
    return lease.sink


def _register_token(ctx: PluginContext) -> None:
    """Keep the WATS token out of every log line, wherever it was read from (file, environment)."""
    wats = wats_settings(ctx.settings)
    try:
        token = wats.resolved_token()
    except ConfigurationError:
        return  # reported when the sender needs it
    if token:
        register_secret(token)


def wats_handlers(ctx: PluginContext) -> list[Any]:
    """WATS handlers writing to a live server (``wats.url``) or to the local outbox.

    ``[handlers.wats]`` holds `WatsHandlersConfig`; a run with no input and no such section (the
    no-argument demo) uses `DEMO_WATS_SETTINGS`, which describe the bundled samples' line. Requests are
    counted by endpoint and status in the listener's registry and in rows of the run summary."""
    s = ctx.settings
    _register_token(ctx)
    options = dict(ctx.options)
    if not options and not s.has_input and s.replay.samples_by_default:
        options = dict(DEMO_WATS_SETTINGS)
        ctx.facts["wats settings"] = "embedded demo settings for the bundled samples' line"
    if not wats_settings(s).url:
        options.setdefault("offline", True)  # an outbox cannot answer lookups
    options.setdefault("state_file", str(s.path_for("wats-state.db")))
    options.pop("outbox", None)  # the sink comes from [wats], built once here
    options.pop("wats_url", None)
    try:
        config = WatsHandlersConfig.model_validate(options)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigurationError(
            "handlers.wats." + ".".join(str(p) for p in err["loc"]), err["msg"]
        ) from None
    sink = wats_sink(ctx)
    meter = RequestMeter(ctx.registry)
    ctx.summary.append(meter.summary_rows)
    made = list(create_handlers(config, MeteredSink(sink, meter)))
    if ctx.single_writers is not None:  # distributed mode: what one listener at a time must do
        for handler in made:
            if isinstance(handler, AssetHandler):
                handler.use_single_writer(ctx.single_writers)
    return made


def _default_event_types() -> tuple[str, ...]:
    """What the WATS handlers subscribe to with the default configuration (for `pywats-events plugins`)."""
    from pywats_events import resolve_event_types

    from .preview import RecordingSink

    made = create_handlers(WatsHandlersConfig(offline=True), RecordingSink())
    return tuple(sorted({t for h in made for t in resolve_event_types(h)}))


wats_handlers.event_types = _default_event_types()  # type: ignore[attr-defined]
wats_handlers.options_model = WatsHandlersConfig  # type: ignore[attr-defined]
