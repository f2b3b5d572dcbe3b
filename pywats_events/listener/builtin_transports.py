"""The core's own transport plugins: replay (files, captures, a codec's bundled samples), MQTT and webhooks.

Ordinary entry-point targets following the contract of `pywats_events.plugins`, like any third-party plugin.
The CFX codec and AMQP transport (`pywats_cfx.plugin`) and the WATS handlers (`handlers.plugin`) live with
their packages; the core knows them only by the names in the configuration.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from pydantic import ValidationError

from .. import plugins
from .._exceptions import ConfigurationError
from ..plugins import PluginContext, RunOption, SettingsSection
from ..transports import BaseTransport
from ..transports.replay import ReplayMessage, ReplayTransport

__all__ = [
    "WEBHOOK_SECTION",
    "bundled_samples",
    "mqtt_config",
    "mqtt_transport",
    "replay_transport",
    "webhook_transport",
]


def bundled_samples(codec_name: str) -> list[ReplayMessage]:
    """The example messages the codec plugin ships (what the no-argument run replays)."""
    return [
        ReplayMessage(body, {}, None, f"sample:{name}") for name, body in plugins.load_samples(codec_name)
    ]


def replay_transport(ctx: PluginContext) -> BaseTransport | None:
    """Replays ``replay.paths``; with no input at all, the codec plugin's bundled samples."""
    s = ctx.settings
    assert ctx.codec is not None
    messages: list[ReplayMessage] = []
    if not s.replay.paths and not s.has_input and s.replay.samples_by_default:
        messages = bundled_samples(s.listener.codec)
        if not messages:
            return None
        ctx.facts["input"] = f"bundled {s.listener.codec} samples ({len(messages)} messages)"
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


def mqtt_config(ctx: PluginContext) -> Any:
    """`MQTTConfig` from ``[mqtt]`` and ``[plugins.mqtt]`` (any other `MQTTConfig` field).

    ``mqtt://user:password@host:port`` (default port 1883); ``mqtts://`` turns TLS on (default port 8883)."""
    from ..transports.mqtt import MQTTConfig

    s = ctx.settings.mqtt
    assert s.url is not None
    url = urlsplit(s.url.get_secret_value())
    if url.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not url.hostname:
        raise ConfigurationError(
            "mqtt.url", "expected mqtt://host[:port] or mqtts://host[:port], optionally with user:password@"
        )
    tls = url.scheme in ("mqtts", "ssl")
    try:
        port = url.port or (8883 if tls else 1883)
    except ValueError:
        # never echo the URL: urlsplit cuts a password that holds '/', '#' or '?' and reads it as the port
        raise ConfigurationError(
            "mqtt.url", "bad port, or a password with '/', '#' or '?' that is not percent-encoded"
        ) from None
    fields: dict[str, Any] = {
        "host": url.hostname,
        "port": port,
        "tls": tls,
        "protocol": s.protocol,
        "topics": dict.fromkeys(s.topics),
        "subscriptions": s.subscriptions,
        "qos": s.qos,
        "persistent_session": s.persistent_session,
        "session_expiry": s.session_expiry,
    }
    username = s.username or (unquote(url.username) if url.username else None)
    password = (
        s.password.get_secret_value() if s.password else (unquote(url.password) if url.password else None)
    )
    if username is not None:
        fields["username"] = username
    if password is not None:
        fields["password"] = password
    for name in ("client_id", "ca_file", "cert_file", "key_file"):
        if getattr(s, name) is not None:
            fields[name] = getattr(s, name)
    options = dict(ctx.options)
    try:
        return MQTTConfig(**{**fields, **options})
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(part) for part in err["loc"]]
        where = f"plugins.{ctx.name}" if loc and loc[0] in options else "mqtt"
        message = str(err["msg"]).removeprefix("Value error, ")
        raise ConfigurationError(".".join([where, *loc]), message) from None


def mqtt_transport(ctx: PluginContext) -> BaseTransport | None:
    """`MQTTTransport` on ``mqtt.url`` (None when it is not set)."""
    if ctx.settings.mqtt.url is None:
        return None
    from ..transports.mqtt import MQTTTransport

    config = mqtt_config(ctx)
    filters = ", ".join(sub.topic for sub in config.all_subscriptions)
    ctx.facts["input"] = f"MQTT {config.url} ({config.client_id}) topics {filters}"
    return MQTTTransport(config, ctx.codec)


def _webhook_section() -> SettingsSection:
    from ..transports.webhook._config import WebhookSettings

    return SettingsSection(
        "webhook",
        WebhookSettings,
        run_options=(
            RunOption("--webhook-port", "webhook.port", "Port of the webhook server.", type=int),
            RunOption("--webhook-host", "webhook.host", "Address the webhook server binds to."),
        ),
        transport="webhook",
        input="hooks",
    )


#: ``[webhook]`` (contributed through ``pywats_events.settings`` like a plugin's section): the webhook server
#: starts when at least one ``[webhook.hooks.<name>]`` is configured
WEBHOOK_SECTION = _webhook_section()


def webhook_transport(ctx: PluginContext) -> BaseTransport | None:
    """`WebhookTransport` serving ``[webhook.hooks.*]`` (None when no hook is configured).

    A hook without a secret is refused unless it is marked ``insecure = true`` and the server is bound to a
    loopback address."""
    from ..transports.mqtt import TopicTemplateCodec
    from ..transports.webhook import (
        Hook,
        HookAuth,
        WebhookSettings,
        WebhookTransport,
        is_loopback,
        load_secret,
    )

    s = ctx.settings.section("webhook", WebhookSettings)
    if not s.hooks:
        return None
    if (s.ssl_certfile is None) != (s.ssl_keyfile is None):
        raise ConfigurationError("webhook.ssl_certfile", "set both ssl_certfile and ssl_keyfile, or neither")
    hooks: dict[str, Hook] = {}
    codecs: dict[str, Any] = {}
    for name, hs in s.hooks.items():
        where = f"webhook.hooks.{name}"
        try:
            secret = load_secret(hs)
        except ValueError as exc:
            raise ConfigurationError(where, str(exc)) from None
        if hs.auth == "none" or secret is None:
            if not hs.insecure or hs.auth != "none":
                raise ConfigurationError(
                    f"{where}.auth",
                    "every hook needs a secret (secret_file or secret_env, with auth = bearer or hmac); "
                    'auth = "none" with insecure = true is only for tests on a loopback address',
                )
            if not is_loopback(s.host):
                raise ConfigurationError(
                    f"{where}.insecure",
                    f"an unauthenticated hook needs a loopback webhook.host, not {s.host!r}",
                )
        codec: Any
        if hs.template is not None:
            try:
                codec = TopicTemplateCodec(hs.template, hs.event_type, hs.fields)
            except ValueError as exc:
                raise ConfigurationError(f"{where}.template", str(exc)) from None
        elif hs.codec == ctx.settings.listener.codec and ctx.codec is not None:
            codec = ctx.codec
        else:
            if hs.codec not in codecs:
                codecs[hs.codec] = plugins.make_codec(
                    hs.codec, dict(ctx.settings.plugins.get(hs.codec, {})), setting=f"{where}.codec"
                )
            codec = codecs[hs.codec]
        auth = HookAuth(hs.auth, secret, s.replay_window)
        hooks[name] = Hook(
            name,
            codec,
            auth,
            template=hs.template is not None,
            message_name=hs.message_name,
            dedupe_events=hs.dedupe_events,
        )
    transport = WebhookTransport(
        s,
        hooks,
        keys_path=ctx.settings.path_for("webhook-keys.db"),
        drain_timeout=min(ctx.settings.listener.drain_timeout, 10.0),
        on_request=_request_counter(ctx),
    )
    scheme = "https" if s.ssl_certfile else "http"
    ctx.facts["input"] = f"webhooks {scheme}://{s.host}:{s.port}/hooks/{{{','.join(sorted(hooks))}}}"
    return transport


def _request_counter(ctx: PluginContext) -> Any:
    """``pywats_webhook_requests_total{hook, status}`` on /metrics (None without a registry)."""
    if ctx.registry is None:
        return None
    from prometheus_client import Counter

    counter = Counter(
        "pywats_webhook_requests",
        "Webhook requests answered, by hook and HTTP status.",
        ["hook", "status"],
        registry=ctx.registry,
    )
    return lambda hook, status: counter.labels(hook, str(status)).inc()
