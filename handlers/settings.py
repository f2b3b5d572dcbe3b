"""The ``[wats]`` settings section: which WATS server the handlers talk to, or the local outbox instead.

Contributed to `pywats-events` as entry point ``pywats_events.settings: wats`` → `WATS_SECTION`, with the
options ``--wats-url``, ``--token-file`` and ``--outbox`` of `pywats-events run` and ``dlq replay``. The
environment sets it as ``PYWATS_EVENTS_WATS_<NAME>`` (e.g. ``PYWATS_EVENTS_WATS_URL``).
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from pywats_events import ConfigurationError
from pywats_events.config import Settings
from pywats_events.plugins import RunOption, SettingsSection

__all__ = ["WATS_SECTION", "WatsSettings", "outbox_path", "wats_settings"]


class WatsSettings(BaseModel):
    """``[wats]``: the WATS server (or the outbox), its token and how hard the handlers may call it."""

    model_config = ConfigDict(extra="forbid")

    #: WATS server; empty = write requests into the local outbox
    url: str | None = None
    token: SecretStr | None = None
    #: file holding the token (for systemd credentials / docker secrets)
    token_file: Path | None = None
    outbox: Path | None = None
    timeout: float = Field(30.0, gt=0)
    #: client-side request rate limit towards WATS (requests per minute)
    rate_limit_per_minute: float = Field(500.0, gt=0)
    max_connections: int = Field(20, gt=0)

    @field_validator("url")
    @classmethod
    def _http(cls, v: str | None) -> str | None:
        if v and not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v or None

    def resolved_token(self) -> str | None:
        """`token`, else the contents of `token_file`, else the environment's ``WATS_AUTH_TOKEN``."""
        if self.token is not None:
            return self.token.get_secret_value()
        if self.token_file is not None:
            try:
                return self.token_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigurationError("wats.token_file", f"cannot read: {exc.strerror}") from exc
        env = os.environ.get("WATS_AUTH_TOKEN")
        return env or None


def wats_settings(settings: Settings) -> WatsSettings:
    """The ``[wats]`` section of `settings` (its defaults when the settings were built without it)."""
    return settings.section("wats", WatsSettings)


def outbox_path(settings: Settings) -> Path:
    """``wats.outbox``, else ``outbox`` in the listener's data directory."""
    return wats_settings(settings).outbox or settings.path_for("outbox")


_DELIVERY = ("run", "dlq replay", "quarantine replay")

#: ``[wats]`` and its command-line options
WATS_SECTION = SettingsSection(
    "wats",
    WatsSettings,
    run_options=(
        RunOption("--wats-url", "wats.url", "WATS server; token from WATS_AUTH_TOKEN.", commands=_DELIVERY),
        RunOption(
            "--token-file", "wats.token_file", "File holding the WATS token.", Path, commands=_DELIVERY
        ),
        RunOption("--outbox", "wats.outbox", "Directory of the local WATS outbox.", Path, commands=_DELIVERY),
    ),
)
