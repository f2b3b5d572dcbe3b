"""First-party plugin factories: replay / AMQP / MQTT transports, the CFX codec, the WATS handlers.

They adapt the listener settings to the constructors of the CFX adapter and the WATS handlers, importing them
only when selected, so the core never imports either package unless the configuration asks for it. They are
ordinary entry-point targets: a third-party plugin follows the same contract (`pywats_events.plugins`).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from .._exceptions import ConfigurationError
from ..plugins import PluginContext
from ..transports import BaseTransport
from ..transports.replay import ReplayMessage, ReplayTransport

__all__ = [
    "amqp_transport",
    "bundled_samples",
    "cfx_codec",
    "mqtt_transport",
    "replay_transport",
    "wats_handlers",
]


#: WATS handler settings matching the bundled samples' line (used only by the no-argument run)
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


def cfx_codec(**options: Any) -> Any:
    from pywats_cfx.codec import CFXCodec

    return CFXCodec(**options)


def bundled_samples() -> list[ReplayMessage]:
    """The CFX sample messages shipped as package data (what the no-argument run replays)."""
    import importlib.resources as resources

    root = resources.files("pywats_cfx") / "samples"
    out: list[ReplayMessage] = []
    for item in sorted(root.iterdir(), key=lambda t: t.name):
        if item.is_file() and item.name.endswith(".json"):
            name = item.name[: -len(".json")]
            out.append(ReplayMessage(item.read_bytes(), {}, None, f"sample:{name}"))
    return out


def replay_transport(ctx: PluginContext) -> BaseTransport | None:
    s = ctx.settings
    assert ctx.codec is not None
    messages: list[ReplayMessage] = []
    if not s.replay.paths and not s.has_input and s.replay.samples_by_default:
        messages = bundled_samples()
        ctx.facts["input"] = f"bundled CFX samples ({len(messages)} messages)"
    elif not s.replay.paths:
        return None
    else:
        ctx.facts["input"] = ", ".join(str(p) for p in s.replay.paths)
    try:
        return ReplayTransport(
            ctx.codec, paths=s.replay.paths, messages=messages, rate=s.replay.rate, **ctx.options
        )
    except FileNotFoundError as exc:
        raise ConfigurationError("replay.paths", str(exc)) from None


def amqp_transport(ctx: PluginContext) -> BaseTransport | None:
    s = ctx.settings.amqp
    if s.url is None:
        return None
    from pydantic import ValidationError

    from pywats_cfx.transport import AMQPConfig, CFXConfig, CFXTransport, EndpointConfig

    opts = dict(ctx.options)
    handle = opts.pop("cfx_handle", "//pywats-events/listener")
    drain = opts.pop("drain_timeout", min(ctx.settings.listener.drain_timeout, 10.0))
    try:
        amqp = AMQPConfig(
            url=s.url,
            exchange=s.exchange,
            queue=s.queue,
            routing_keys=list(s.bindings),
            prefetch_count=s.prefetch,
            **opts,
        )
        config = CFXConfig(amqp=amqp, endpoint=EndpointConfig(cfx_handle=handle), drain_timeout=drain)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigurationError("amqp." + ".".join(str(p) for p in err["loc"]), err["msg"]) from None
    ctx.facts["input"] = f"AMQP queue {s.queue!r} on exchange {s.exchange!r}"
    return CFXTransport(config, ctx.codec)


def mqtt_transport(ctx: PluginContext) -> BaseTransport | None:
    s = ctx.settings.mqtt
    if s.url is None:
        return None
    from pywats_events.transports import mqtt

    cls: Any = mqtt.MQTTTransport
    params = inspect.signature(cls).parameters
    kwargs: dict[str, Any] = dict(ctx.options)
    url = s.url.get_secret_value()
    if "config" in params and hasattr(mqtt, "MQTTConfig"):
        cfg_cls: Any = mqtt.MQTTConfig
        cfg_fields = getattr(cfg_cls, "model_fields", {})
        cfg: dict[str, Any] = {}
        for key, value in (
            ("url", url),
            ("topics", list(s.topics)),
            ("qos", s.qos),
            ("client_id", s.client_id),
        ):
            if key in cfg_fields and value is not None:
                cfg[key] = value
        cfg.update({k: kwargs.pop(k) for k in list(kwargs) if k in cfg_fields})
        kwargs["config"] = cfg_cls(**cfg)
    else:
        for key, value in (
            ("url", url),
            ("topics", list(s.topics)),
            ("qos", s.qos),
            ("client_id", s.client_id),
        ):
            if key in params and value is not None:
                kwargs.setdefault(key, value)
    if "codec" in params:
        kwargs["codec"] = ctx.codec
    ctx.facts["input"] = f"MQTT topics {', '.join(s.topics)}"
    transport: BaseTransport = cls(**kwargs)
    return transport


def wats_handlers(ctx: PluginContext) -> list[Any]:
    """WATS handlers writing to a live server (`wats.url`) or to the local outbox."""
    from pydantic import ValidationError

    from handlers import factory
    from handlers.config import WatsHandlersConfig

    s = ctx.settings
    options = dict(s.handlers.get("wats", {}))
    if not options and not s.has_input and s.replay.samples_by_default:
        options = dict(DEMO_WATS_SETTINGS)  # the no-argument run: the samples' line, described once
        ctx.facts["wats settings"] = "embedded demo settings for the bundled samples' line"
    sink: Any
    if s.wats.url:
        from handlers.wats.sender import HttpSender

        token = s.wats.resolved_token()
        if not token:
            raise ConfigurationError("wats.token", "no WATS token: set WATS_AUTH_TOKEN or --token-file")
        sink = HttpSender(
            s.wats.url,
            token,
            timeout=s.wats.timeout,
            rate_limit_per_minute=s.wats.rate_limit_per_minute,
            max_connections=s.wats.max_connections,
        )
        ctx.facts["wats"] = s.wats.url
    else:
        from handlers.wats.outbox import Outbox

        path = outbox_file(s.outbox_path)
        sink = Outbox(path)
        ctx.facts["outbox"] = str(path)
    ctx.cleanups.append(sink.aclose)
    metered = ctx.meter_sink(sink)
    if not s.wats.url:
        options.setdefault("offline", True)  # an outbox cannot answer lookups
    options.pop("outbox", None)
    options.pop("wats_url", None)
    try:
        config = WatsHandlersConfig.model_validate(options)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigurationError(
            "handlers.wats." + ".".join(str(p) for p in err["loc"]), err["msg"]
        ) from None
    create: Any = factory.create_handlers
    return list(create(config, metered))


def outbox_file(directory: Path) -> Path:
    """`--outbox DIR` names a directory; the store is one SQLite file inside it."""
    return directory / "outbox.db" if directory.suffix != ".db" else directory
