"""Entry-point targets that plug the CFX adapter into `pywats-events run` (contract: `pywats_events.plugins`).

``pywats_events.codecs: cfx`` → `codec`, ``pywats_events.transports: amqp`` → `amqp_transport`,
``pywats_events.samples: cfx`` → `bundled_samples`, ``pywats_events.settings: amqp`` → `AMQP_SECTION` (the
``[amqp]`` section, `AmqpSettings`, and the ``--amqp``, ``--exchange``, ``--queue``, ``--binding``
options), ``pywats_events.broker_dead_letters: amqp`` → `broker_dead_letters`. The core finds them by
name only, exactly as it finds a third-party plugin; nothing in the core imports this package.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from pywats_events import ConfigurationError
from pywats_events.broker_dead_letters import BrokerDeadLetters
from pywats_events.config import Settings
from pywats_events.plugins import PluginContext, RunOption, SettingsSection
from pywats_events.transports import BaseTransport

from ._values import parse_datetime
from .amqp.config import AmqpSettings
from .codec import CFXCodec
from .definitions import typed_description
from .mappers import MAPPED_MESSAGES

__all__ = ["AMQP_SECTION", "amqp_transport", "broker_dead_letters", "bundled_samples", "codec"]

#: ``[amqp]``: where the listener consumes CFX traffic; the AMQP transport starts when ``amqp.url`` is set
AMQP_SECTION = SettingsSection(
    "amqp",
    AmqpSettings,
    run_options=(
        RunOption("--amqp", "amqp.url", "RabbitMQ URL, e.g. amqp://user:pw@host/vhost."),
        RunOption("--exchange", "amqp.exchange", "AMQP exchange CFX endpoints publish to."),
        RunOption("--queue", "amqp.queue", "AMQP queue to consume."),
        RunOption("--binding", "amqp.bindings", "AMQP routing-key pattern (repeatable).", repeatable=True),
    ),
    transport="amqp",
    input="url",
)

#: the CFX handle the listener announces itself with on the broker (``[plugins.amqp] cfx_handle``)
DEFAULT_HANDLE = "//pywats-events/listener"


def codec(**options: Any) -> CFXCodec:
    """The CFX codec; options of ``[plugins.cfx]`` are `CFXCodec` keyword arguments."""
    return CFXCodec(**options)


#: the CFX messages the codec maps → the event type each becomes (read by `python -m pywats_events.docgen`;
#: anything else valid becomes ``passthrough``)
codec.message_types = {name: t.value for name, t in MAPPED_MESSAGES.items()}  # type: ignore[attr-defined]
#: what the codec reads from each message and structure, from its typed description (called by docgen)
codec.input_types = typed_description  # type: ignore[attr-defined]


def bundled_samples() -> list[tuple[str, bytes]]:
    """The CFX sample messages shipped as package data, in the order the line sent them (envelope
    ``TimeStamp``; samples without a readable one go last, by name). A no-argument run replays them so:
    file-name order would queue a unit's child units and phases before the WorkStarted that creates it."""
    from .samples import list_samples, load_sample

    samples = [(name, load_sample(name)) for name in list_samples()]
    return sorted(samples, key=lambda sample: _sent_at(sample[1]))


def _sent_at(body: bytes) -> tuple[int, datetime]:
    """Sort key of a sample: (0, its envelope TimeStamp) or (1, a placeholder) when it has none."""
    try:
        stamp = parse_datetime(json.loads(body).get("TimeStamp"))
    except (ValueError, AttributeError):
        stamp = None
    return (0, stamp) if stamp is not None else (1, datetime.min.replace(tzinfo=timezone.utc))


def amqp_transport(ctx: PluginContext) -> BaseTransport | None:
    """`CFXTransport` on RabbitMQ from ``[amqp]`` (None when no ``amqp.url`` is set).

    ``[plugins.amqp]`` options are `AMQPConfig` fields over ``[amqp]``, plus ``cfx_handle`` and
    ``drain_timeout``."""
    s = ctx.settings.section("amqp", AmqpSettings)
    if s.url is None:
        return None
    from pydantic import ValidationError

    from .amqp import CFXConfig, CFXTransport, EndpointConfig

    opts = dict(ctx.options)
    handle = opts.pop("cfx_handle", DEFAULT_HANDLE)
    drain = opts.pop("drain_timeout", min(ctx.settings.listener.drain_timeout, 10.0))
    try:
        amqp = s.config(**opts)
        config = CFXConfig(
            amqp=amqp,
            endpoint=EndpointConfig(cfx_handle=handle),
            drain_timeout=drain,
            distributed=ctx.settings.listener.distributed,
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigurationError("amqp." + ".".join(str(p) for p in err["loc"]), err["msg"]) from None
    if amqp.shards and not config.distributed:
        raise ConfigurationError(
            "amqp.shards", "sharding needs [listener] distributed = true (several listeners share the shards)"
        )
    ctx.facts["input"] = f"AMQP queue {s.queue!r} on exchange {s.exchange!r}"
    if amqp.shards:
        ctx.facts["input"] += f", {amqp.shards} shards by {amqp.shard_key}"
    transport = CFXTransport(config, ctx.codec)
    if config.distributed and ctx.registry is not None:
        _distributed_metrics(ctx, transport)
    return transport


def broker_dead_letters(settings: Settings) -> BrokerDeadLetters | None:
    """In distributed mode on RabbitMQ, `pywats-events dlq` works on the broker's dead-letter queue
    (`AmqpDeadLetters`); None otherwise (the local dead-letter queue applies)."""
    if not settings.listener.distributed:
        return None
    s = settings.section("amqp", AmqpSettings)
    if s.url is None:
        return None
    from pydantic import ValidationError

    from .amqp.dead_letters import AmqpDeadLetters

    opts = {k: v for k, v in settings.plugins.get("amqp", {}).items() if k not in _NOT_AMQP_OPTIONS}
    try:
        amqp = s.config(**opts)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigurationError("amqp." + ".".join(str(p) for p in err["loc"]), err["msg"]) from None
    return AmqpDeadLetters(amqp)


#: ``[plugins.amqp]`` options that are not `AMQPConfig` fields
_NOT_AMQP_OPTIONS = frozenset({"cfx_handle", "drain_timeout"})


def _distributed_metrics(ctx: PluginContext, transport: Any) -> None:
    """Gauges of distributed mode on the listener's /metrics: shards owned, messages retried on the
    broker and dead-lettered there, intake messages re-published and single-writer items done here
    (monotonic since start)."""
    from prometheus_client import Gauge

    def part(name: str, what: str) -> Callable[[], int]:
        def read() -> int:
            found = getattr(transport, name)
            return int(getattr(found, what)) if found is not None else 0

        return read

    gauges = [
        (
            "pywats_amqp_shards_owned",
            "Shard queues this listener owns.",
            lambda: len(transport.shards.owned) if transport.shards is not None else 0,
        ),
        (
            "pywats_amqp_retried_messages",
            "Messages handed to a broker delay queue (retry, or held behind an earlier one of their unit).",
            part("_settlement", "retried"),
        ),
        (
            "pywats_amqp_dead_lettered_messages",
            "Messages dead-lettered on the broker after a permanent handler failure.",
            part("_settlement", "dead_lettered"),
        ),
        (
            "pywats_amqp_intake_republished",
            "Intake messages this listener re-published by unit (as the intake's active consumer).",
            part("shards", "republished"),
        ),
        (
            "pywats_amqp_single_writer_items",
            "Single-writer work items (asset usage counts) this listener did as the writer.",
            part("writers", "served"),
        ),
        (
            "pywats_amqp_single_writer_takeovers",
            "Times this listener became a single writer and read its ledger.",
            part("writers", "takeovers"),
        ),
    ]
    for name, documentation, read in gauges:
        Gauge(name, documentation, registry=ctx.registry).set_function(read)
