"""`MQTTConfig` and `Subscription`: where to connect, how to keep the session, what each topic carries."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any, Literal

from paho.mqtt import client as paho
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ._topic_template import TopicTemplate

__all__ = ["MQTTConfig", "Subscription", "default_client_id"]

#: a week: how long the broker keeps an MQTT 5 session (subscriptions, queued messages) while we are away
DEFAULT_SESSION_EXPIRY = 7 * 24 * 3600


def default_client_id() -> str:
    """Stable across restarts of the same host, so a persistent session is found again."""
    host = socket.gethostname().split(".")[0] or "host"
    return f"pywats-events-{host}"[:64]


class Subscription(BaseModel):
    """One topic filter and how its payloads become events.

    `codec` names how payloads are read: the transport's own codec when omitted (CFX for the listener),
    ``"event"`` for native event JSON (`Event.to_json()`), ``"template"`` for plain sensor values described by
    `template`, or any codec installed under the ``pywats_events.codecs`` entry point group.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: MQTT topic filter (``+`` and ``#`` wildcards); derived from `template` when omitted
    topic: str = ""
    codec: str | None = None
    #: CFX message name of bare message bodies on this topic (an envelope's own MessageName wins)
    message_name: str | None = None
    #: topic segments → payload fields, e.g. ``factory/{line}/{station}/temperature``
    template: str | None = None
    #: event type of template events; may name template fields, e.g. ``sensor.{quantity}``
    event_type: str = "asset.telemetry"
    #: constant payload fields added to every template event (e.g. ``{units = "degC"}``)
    fields: dict[str, Any] = Field(default_factory=dict)
    #: QoS of this subscription (None: the transport's `qos`)
    qos: Literal[0, 1, 2] | None = None

    @model_validator(mode="after")
    def _complete(self) -> Subscription:
        if self.template is not None:
            parsed = TopicTemplate(self.template)  # raises ValueError naming the problem
            if not self.topic:
                object.__setattr__(self, "topic", parsed.topic_filter)
            elif self.topic != parsed.topic_filter:
                raise ValueError(
                    f"topic {self.topic!r} does not fit template {self.template!r}: leave topic out "
                    f"(it is {parsed.topic_filter!r})"
                )
            unknown = parsed.unknown_fields(self.event_type)
            if unknown:
                raise ValueError(f"event_type {self.event_type!r} names {unknown}, not template fields")
            if self.codec is None:
                object.__setattr__(self, "codec", "template")
        if not self.topic:
            raise ValueError("a subscription needs a topic (or a template)")
        _check_filter(self.topic)
        if self.codec == "template" and self.template is None:
            raise ValueError("codec 'template' needs a template, e.g. 'factory/{line}/{station}/temperature'")
        return self

    def matches(self, topic: str) -> bool:
        return bool(paho.topic_matches_sub(self.topic, topic))


def _check_filter(topic: str) -> None:
    """MQTT's rules for a filter: ``#`` only as the whole last level, ``+`` only as a whole level."""
    levels = topic.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise ValueError(f"bad topic filter {topic!r}: '#' must be the whole last level")
        if "+" in level and level != "+":
            raise ValueError(f"bad topic filter {topic!r}: '+' must be a whole level")


class MQTTConfig(BaseModel):
    """Broker address, session, credentials and subscriptions. The password never appears in `repr` or logs.

    Delivery is at-least-once by default: QoS 1, a persistent session under a stable client id (clean session
    off; for MQTT 5 clean start off with `session_expiry`), and a PUBACK only after the bus accepted a
    message's events.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "localhost"
    port: int = Field(default=1883, gt=0, lt=65536)
    #: MQTT protocol: 3.1.1 or 5
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    #: stable across restarts (a persistent session is keyed by it); default ``pywats-events-<host name>``
    client_id: str = Field(default_factory=default_client_id, min_length=1, max_length=65535)
    username: str | None = None
    password: SecretStr | None = None
    #: keep subscriptions and unacknowledged messages on the broker while we are away
    persistent_session: bool = True
    #: MQTT 5: seconds the broker keeps the session after a disconnect
    session_expiry: int = Field(default=DEFAULT_SESSION_EXPIRY, ge=0)
    #: MQTT 5: messages the broker may have in flight to us before our acknowledgements (memory bound)
    receive_maximum: int = Field(default=1000, ge=1, le=65535)
    #: shorthand: topic filter → CFX message name on that topic (None: the envelope names itself)
    topics: dict[str, str | None] = Field(default_factory=dict)
    subscriptions: list[Subscription] = Field(default_factory=list)
    qos: Literal[0, 1, 2] = 1
    keepalive: int = Field(default=30, ge=5)
    reconnect_min_delay: int = Field(default=1, ge=1)
    reconnect_max_delay: int = Field(default=30, ge=1)
    connect_timeout: float = Field(default=10.0, gt=0)
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    #: skip the server certificate's host name check (only for brokers addressed by IP in a closed network)
    tls_insecure: bool = False
    #: seconds `stop()` waits for in-flight messages to be accepted and acknowledged
    drain_timeout: float = Field(default=10.0, ge=0)
    #: messages decoded and submitted to the bus together (one journal write, one ack sweep)
    batch_size: int = Field(default=256, ge=1)
    #: QoS 0 messages held while the bus is busy; beyond it they are dropped and counted (QoS 0 has no flow
    #: control: the broker does not wait for us)
    qos0_backlog: int = Field(default=100_000, ge=1)

    _effective: list[Subscription] = PrivateAttr(default_factory=list)

    @field_validator("subscriptions", mode="before")
    @classmethod
    def _tables(cls, value: Any) -> Any:
        return list(value.values()) if isinstance(value, dict) else value

    @field_validator("ca_file", "cert_file", "key_file")
    @classmethod
    def _readable(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        if path is not None and not path.is_file():
            raise ValueError(f"no such file: {path}")
        if info.field_name == "key_file" and path is not None and info.data.get("cert_file") is None:
            raise ValueError("a key_file needs its cert_file")
        return path

    @field_validator("password")
    @classmethod
    def _with_username(cls, password: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if password is not None and info.data.get("username") is None:
            raise ValueError("a password needs a username")
        return password

    @model_validator(mode="after")
    def _check(self) -> MQTTConfig:
        subs = [Subscription(topic=t, message_name=n) for t, n in self.topics.items()]
        subs += self.subscriptions
        self._effective = subs or [Subscription(topic="cfx/#")]
        if self.reconnect_max_delay < self.reconnect_min_delay:
            raise ValueError("reconnect_max_delay must not be below reconnect_min_delay")
        return self

    @property
    def all_subscriptions(self) -> list[Subscription]:
        """`topics` (as subscriptions) then `subscriptions`; ``cfx/#`` when neither names one."""
        return self._effective

    def subscription_for(self, topic: str) -> Subscription | None:
        """The first subscription whose filter matches `topic` (configuration order)."""
        return next((sub for sub in self._effective if sub.matches(topic)), None)

    @property
    def url(self) -> str:
        """Where we connect, without credentials (for logs and status)."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    def __repr__(self) -> str:
        filters = [s.topic for s in self._effective]
        return f"MQTTConfig({self.url}, client_id={self.client_id!r}, subscriptions={filters})"
