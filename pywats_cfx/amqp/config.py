"""Configuration of the CFX AMQP transport: connection, topology, and how we behave as a CFX endpoint.

Secrets never appear in `repr`, logs or errors: passwords are `SecretStr` and URLs are shown redacted.
Credentials may come from the environment (`CFX_AMQP_URL`, `CFX_AMQP_USER`, `CFX_AMQP_PASSWORD`) so they
need not be written into configuration files; values set explicitly in the configuration win.
"""

from __future__ import annotations

import os
import ssl as _ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from pywats_events import ConfigurationError
from pywats_events.config import check_url_scheme

__all__ = [
    "DEFAULT_EXCHANGE",
    "DEFAULT_QUEUE",
    "ENV_AMQP_PASSWORD",
    "ENV_AMQP_URL",
    "ENV_AMQP_USER",
    "AMQPConfig",
    "AmqpSettings",
    "CFXConfig",
    "ConnectionParameters",
    "EndpointConfig",
    "redact_url",
]

ENV_AMQP_URL = "CFX_AMQP_URL"
ENV_AMQP_USER = "CFX_AMQP_USER"
ENV_AMQP_PASSWORD = "CFX_AMQP_PASSWORD"

DEFAULT_EXCHANGE = "cfx"
DEFAULT_QUEUE = "pywats-events"


def redact_url(url: str) -> str:
    """`amqp://user:secret@host/` → `amqp://user:******@host/` (also for URLs that fail to parse)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit((parts.scheme, f"{user}:******@{host}", parts.path, parts.query, parts.fragment))


@dataclass(frozen=True)
class ConnectionParameters:
    """What the transport hands to aio-pika, resolved from configuration and environment."""

    host: str
    port: int
    login: str
    password: str
    virtualhost: str
    ssl: bool

    def __repr__(self) -> str:  # the password must never show up in a log line or traceback
        return (
            f"ConnectionParameters(host={self.host!r}, port={self.port}, login={self.login!r}, "
            f"password='******', virtualhost={self.virtualhost!r}, ssl={self.ssl})"
        )

    @property
    def display_url(self) -> str:
        scheme = "amqps" if self.ssl else "amqp"
        vhost = quote(self.virtualhost, safe="")
        return f"{scheme}://{self.login}:******@{self.host}:{self.port}/{vhost}"


class AMQPConfig(BaseModel):
    """Broker connection and topology.

    Either give `url` (`amqp://` or `amqps://`, may carry user, password and virtual host) or `host`/`port`/
    `virtual_host`. The queue is durable and bound to a topic exchange with the CFX SDK's subjects
    `<handle>.<MessageName>` as routing keys; `message_types` narrows the bindings to some message names.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: full broker URL; falls back to env CFX_AMQP_URL, then host/port
    url: SecretStr | None = None
    host: str = "localhost"
    #: default 5672, or 5671 with TLS
    port: int | None = None
    virtual_host: str = "/"
    #: falls back to the URL's user, env CFX_AMQP_USER, then "guest"
    username: str | None = None
    #: falls back to the URL's password, env CFX_AMQP_PASSWORD, then "guest"
    password: SecretStr | None = None

    #: TLS; implied by an amqps:// URL
    ssl: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    #: check the broker certificate's host name (keep on outside of tests)
    verify_hostname: bool = True

    #: exchange CFX endpoints publish to (the SDK's `/exchange/<name>`)
    exchange: str = DEFAULT_EXCHANGE
    #: the exchange's type; an existing exchange of another type is refused at start-up
    exchange_type: Literal["topic", "direct", "fanout", "headers", "x-consistent-hash"] = "topic"
    #: the exchange survives a broker restart; an existing exchange that differs is refused at start-up
    durable: bool = True
    #: declare the exchange — off when the broker admin manages it (then it is only checked)
    declare_exchange: bool = True
    queue: str = DEFAULT_QUEUE
    #: consume an existing queue as is (passive declare, no bindings, no dead-letter setup)
    passive_queue: bool = False
    queue_type: Literal["classic", "quorum"] = "classic"
    #: per-process ordering across competing consumers: let only one consumer receive at a time
    single_active_consumer: bool = False
    #: routing-key patterns to bind; the default receives every CFX message on the exchange
    routing_keys: list[str] = Field(default_factory=lambda: ["#"])
    #: when set, bind `#.<MessageName>` for each name instead of `routing_keys`
    message_types: list[str] = Field(default_factory=list)
    #: poison messages are rejected to this exchange (declared by us, direct); None disables dead-lettering
    dead_letter_exchange: str | None = "cfx.dead-letter"
    #: queue bound to the dead-letter exchange that keeps the rejected messages; default `<queue>.dead-letter`
    dead_letter_queue: str | None = None

    #: sharding (distributed mode): this many shard queues behind a consistent-hash exchange, keyed by
    #: the unit serial; listeners share them (0 = one queue, hot standby with single_active_consumer)
    shards: int = Field(default=0, ge=0, le=1024)
    #: what the hash is taken of: "unit" (the unit serial, or the CFX handle where no unit is named) or
    #: "endpoint" (the routing key, i.e. the CFX handle and message name: no re-publishing stage, and
    #: order kept only per station and message kind)
    shard_key: Literal["unit", "endpoint"] = "unit"
    #: seconds between two looks at how many listeners share the shards (claiming and releasing shards)
    shard_rebalance_interval: float = Field(default=1.0, gt=0)
    #: distributed mode: delay before the n-th broker retry of a message whose handler failed
    #: transiently (the last one repeats); each delay is its own queue with per-message TTL
    retry_delays: list[float] = Field(default_factory=lambda: [5.0, 30.0, 120.0])

    #: unacknowledged deliveries in flight (bounds memory and how much a crash hands back to the broker)
    prefetch_count: int = Field(default=128, ge=1, le=65535)
    heartbeat: int = Field(default=60, ge=0)
    reconnect_interval: float = Field(default=2.0, gt=0)
    connect_timeout: float = Field(default=10.0, gt=0)
    #: shown in the broker's connection list; lets an operator close exactly this connection
    connection_name: str | None = None

    @field_validator("exchange_type")
    @classmethod
    def _plant_exchange_type(cls, value: str) -> str:
        if value == "x-consistent-hash":
            raise ValueError(
                "the plant's exchange stays a topic exchange (CFX routing keys name the endpoint and the"
                " message, not the unit); for sharding set 'shards' (e.g. shards = 8): the listener then"
                " declares its own consistent-hash exchange '<queue>.shards' keyed by the unit serial"
            )
        return value

    @field_validator("routing_keys")
    @classmethod
    def _at_least_one_binding(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("routing_keys must not be empty (use ['#'] to receive everything)")
        return value

    def __repr__(self) -> str:
        return f"AMQPConfig({self.redacted_url()!r}, exchange={self.exchange!r}, queue={self.queue!r})"

    __str__ = __repr__

    # -- resolution -----------------------------------------------------------------------------------

    def bindings(self) -> list[str]:
        """Routing-key patterns to bind the queue with."""
        if self.message_types:
            return [f"#.{name}" for name in self.message_types]
        return list(self.routing_keys)

    @field_validator("retry_delays")
    @classmethod
    def _retry_delays(cls, value: list[float]) -> list[float]:
        if not value or any(d <= 0 for d in value):
            raise ValueError("retry_delays must name at least one delay, each above 0 seconds")
        return value

    def dead_letter_queue_name(self) -> str | None:
        if self.dead_letter_exchange is None:
            return None
        return self.dead_letter_queue or f"{self.queue}.dead-letter"

    def connection_parameters(self, environ: Mapping[str, str] | None = None) -> ConnectionParameters:
        """Host, credentials and TLS from configuration, then the URL, then the environment, then defaults."""
        env = os.environ if environ is None else environ
        url = self.url.get_secret_value() if self.url is not None else env.get(ENV_AMQP_URL)
        host, port, vhost = self.host, self.port, self.virtual_host
        url_user: str | None = None
        url_password: str | None = None
        use_ssl = self.ssl
        if url:
            try:
                parts = urlsplit(url)
                url_port = parts.port
            except ValueError:
                raise ConfigurationError("amqp.url", f"not a valid URL: {redact_url(url)}") from None
            if parts.scheme not in ("amqp", "amqps"):
                raise ConfigurationError("amqp.url", f"scheme must be amqp or amqps, got {parts.scheme!r}")
            use_ssl = use_ssl or parts.scheme == "amqps"
            host = parts.hostname or host
            port = self.port or url_port
            if parts.path not in ("", "/"):
                vhost = unquote(parts.path[1:])
            url_user = unquote(parts.username) if parts.username else None
            url_password = unquote(parts.password) if parts.password is not None else None
        login = self.username or url_user or env.get(ENV_AMQP_USER) or "guest"
        if self.password is not None:
            password = self.password.get_secret_value()
        else:
            password = url_password or env.get(ENV_AMQP_PASSWORD) or "guest"
        return ConnectionParameters(
            host=host,
            port=port or (5671 if use_ssl else 5672),
            login=login,
            password=password,
            virtualhost=vhost,
            ssl=use_ssl,
        )

    def redacted_url(self, environ: Mapping[str, str] | None = None) -> str:
        """The broker address for logs: never contains the password."""
        try:
            return self.connection_parameters(environ).display_url
        except ConfigurationError:
            return "<invalid amqp url>"

    def connect_options(
        self,
        connection_name: str,
        environ: Mapping[str, str] | None = None,
        params: ConnectionParameters | None = None,
    ) -> dict[str, Any]:
        """Keyword arguments of `aio_pika.connect` / `connect_robust` for every connection the adapter opens:
        address, credentials, TLS, timeouts and the name the broker's management UI shows."""
        params = params or self.connection_parameters(environ)
        return {
            "host": params.host,
            "port": params.port,
            "login": params.login,
            "password": params.password,
            "virtualhost": params.virtualhost,
            "ssl": params.ssl,
            "ssl_context": self.ssl_context(environ),
            "timeout": self.connect_timeout,
            "client_properties": {"product": "pywats-events", "connection_name": connection_name},
            "heartbeat": self.heartbeat,
        }

    def ssl_context(self, environ: Mapping[str, str] | None = None) -> _ssl.SSLContext | None:
        """A client TLS context with the configured CA and client certificate, or None without TLS."""
        if not self.connection_parameters(environ).ssl:
            return None
        context = _ssl.create_default_context(_ssl.Purpose.SERVER_AUTH)
        if self.ca_file is not None:
            try:
                context.load_verify_locations(cafile=str(self.ca_file))
            except (OSError, _ssl.SSLError) as exc:
                raise ConfigurationError("amqp.ca_file", f"cannot load CA file: {exc}") from exc
        if self.cert_file is not None:
            try:
                context.load_cert_chain(
                    str(self.cert_file), str(self.key_file) if self.key_file is not None else None
                )
            except (OSError, _ssl.SSLError) as exc:
                raise ConfigurationError("amqp.cert_file", f"cannot load client certificate: {exc}") from exc
        elif self.key_file is not None:
            raise ConfigurationError("amqp.key_file", "a key file needs cert_file as well")
        context.check_hostname = self.verify_hostname
        if not self.verify_hostname:
            # Hostname checks off (e.g. broker addressed by IP) still verifies the chain.
            context.verify_mode = _ssl.CERT_REQUIRED
        return context


class AmqpSettings(AMQPConfig):
    """The listener's ``[amqp]`` section: an `AMQPConfig` as `pywats-events run` documents it.

    The queue's routing keys are written ``bindings`` and the prefetch ``prefetch`` (default 200: the
    listener acknowledges in batches); the URL is checked when the settings load, so a bad one names
    ``amqp.url`` before anything starts."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    #: routing-key patterns to bind; the default receives every CFX message on the exchange
    routing_keys: list[str] = Field(default_factory=lambda: ["#"], alias="bindings")
    #: unacknowledged deliveries in flight
    prefetch_count: int = Field(default=200, ge=1, le=65535, alias="prefetch")

    @field_validator("url")
    @classmethod
    def _amqp_url(cls, v: SecretStr | None) -> SecretStr | None:
        return check_url_scheme(
            v, ("amqp", "amqps"), "amqp://host[:port]/vhost, credentials as user:password@ before the host"
        )

    def config(self, **options: object) -> AMQPConfig:
        """The `AMQPConfig` the transport connects with: these settings, `options` over them."""
        return AMQPConfig.model_validate({**dict(self), **options})


class EndpointConfig(BaseModel):
    """Who we are on the CFX network, and whether we announce ourselves like an SDK endpoint does."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: our CFX handle, e.g. `//Company/WATS/Station1`; used as `Source` and routing-key prefix
    cfx_handle: str
    #: publish CFX.EndpointConnected on start and CFX.EndpointShuttingDown on stop
    announce: bool = False
    #: publish CFX.Heartbeat every this many seconds (1 s … 300 s per the standard); None = no heartbeat
    heartbeat_interval: float | None = Field(default=None, ge=1.0, le=300.0)
    #: exchange for what we publish; default: the consuming exchange
    publish_exchange: str | None = None
    #: gzip what we publish (the SDK default since 2020)
    compress: bool = True
    #: advertised in EndpointConnected
    request_uri: str | None = None
    request_target_address: str | None = None

    @field_validator("cfx_handle")
    @classmethod
    def _handle_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("cfx_handle must not be empty")
        return value


class CFXConfig(BaseModel):
    """Everything `CFXTransport` needs.

    `CFXConfig(amqp=AMQPConfig(host="broker"), endpoint=EndpointConfig(cfx_handle="//Company/WATS/Station1"))`
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    amqp: AMQPConfig = Field(default_factory=AMQPConfig)
    endpoint: EndpointConfig
    #: seconds `stop()` waits for in-flight deliveries to be accepted and acked before closing
    drain_timeout: float = Field(default=10.0, ge=0)
    #: distributed mode (``[listener] distributed``): settle each message after the handlers finished,
    #: retry through the broker's delay queues, dead-letter on the broker
    distributed: bool = False
