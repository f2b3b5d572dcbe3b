"""``[webhook]``: where the webhook server listens, its limits, and one ``[webhook.hooks.<name>]`` per hook.

Secrets are read from a file (``secret_file``) or an environment variable (``secret_env``), never written in
the configuration itself, and held as `SecretStr` so they never reach a log or a `repr`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from ..._net import is_loopback

__all__ = ["HookSettings", "WebhookSettings", "is_loopback", "load_secret"]

_HOOK_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class HookSettings(BaseModel):
    """One hook, ``POST /hooks/<name>[/<rest of the path>]``."""

    model_config = ConfigDict(extra="forbid")

    #: codec plugin reading the body (``cfx``: envelopes, arrays of envelopes, bare bodies; ``event``: the
    #: bus's event JSON); with `template` set, the path's fields are extracted instead
    codec: str = "cfx"
    #: names a bare CFX MessageBody (also: a ``CFX-Message`` header, or the path ``/hooks/<name>/CFX.…``)
    message_name: str | None = None
    #: topic-template field extraction from the rest of the path, like the MQTT templates:
    #: ``{line}/{station}/temperature`` on ``POST /hooks/<name>/L1/ICT-01/temperature``
    template: str | None = None
    #: event type of template events (may name template fields: ``sensor.{quantity}``)
    event_type: str = "asset.telemetry"
    #: constant payload fields of template events
    fields: dict[str, Any] = Field(default_factory=dict)
    #: ``bearer``: ``Authorization: Bearer <secret>``; ``hmac``: ``X-Pywats-Signature: sha256=<hex>`` over
    #: ``<X-Pywats-Timestamp>.<body>``; ``none`` only with `insecure` on a loopback host
    auth: Literal["bearer", "hmac", "none"] = "hmac"
    #: a file holding the secret (surrounding whitespace is stripped)
    secret_file: Path | None = None
    #: the name of an environment variable holding the secret
    secret_env: str | None = None
    #: accept unauthenticated requests; refused unless the server is bound to a loopback address
    insecure: bool = False
    #: drop events whose id was accepted before (CFX event ids derive from the envelope's UniqueID)
    dedupe_events: bool = True


class WebhookSettings(BaseModel):
    """The webhook server; it starts when at least one hook is configured."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8088, ge=0, le=65535)
    hooks: dict[str, HookSettings] = Field(default_factory=dict)
    #: largest request body as received (compressed or not): above → 413
    max_body_bytes: int = Field(16 * 1024 * 1024, gt=0)
    #: largest body after inflating ``Content-Encoding: gzip``: above → 413 (a gzip bomb stops here)
    max_inflated_bytes: int = Field(64 * 1024 * 1024, gt=0)
    #: how long a request waits for the journal to accept its events before it is answered 503
    accept_timeout: float = Field(10.0, gt=0)
    #: requests being processed at once; more are answered 429
    max_concurrent: int = Field(256, gt=0)
    #: the ``Retry-After`` seconds of a 429 or 503
    retry_after: int = Field(5, ge=0)
    #: how far ``X-Pywats-Timestamp`` may be from the server's clock, in seconds (the replay window)
    replay_window: float = Field(300.0, gt=0)
    #: idempotency keys and event ids remembered (SQLite in the data dir), by count and by age in seconds
    idempotency_max_keys: int = Field(1_000_000, gt=0)
    idempotency_retention: float = Field(7 * 24 * 3600.0, gt=0)
    #: TLS served by the listener itself (PEM); otherwise terminate TLS at a reverse proxy
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None

    @field_validator("hooks")
    @classmethod
    def _hook_names(cls, v: dict[str, HookSettings]) -> dict[str, HookSettings]:
        for name in v:
            if not _HOOK_NAME.match(name):
                raise ValueError(f"hook name {name!r}: use letters, digits, '_', '-' and '.' only")
        return v


def load_secret(hook: HookSettings) -> SecretStr | None:
    """The hook's secret from its file or environment variable; a `ValueError` naming the source (never the
    value) when it is missing or empty."""
    if hook.secret_file is not None:
        try:
            text = hook.secret_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"secret_file cannot be read: {exc.strerror or exc}") from None
        if not text:
            raise ValueError(f"secret_file {str(hook.secret_file)!r} is empty")
        return SecretStr(text)
    if hook.secret_env is not None:
        text = os.environ.get(hook.secret_env, "").strip()
        if not text:
            raise ValueError(f"environment variable {hook.secret_env} is not set or empty")
        return SecretStr(text)
    return None
