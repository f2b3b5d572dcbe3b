"""Who may change state through the console: a token, a same-origin check and a CSRF double submit.

Reading is open to whoever reaches the port (loopback by default, like /metrics); replay, purge,
re-decode and plugin actions need the token, sent as ``Authorization: Bearer`` or through the login form,
which sets an HttpOnly session cookie. Every state-changing request must also carry the CSRF cookie's value
in the ``X-Console-CSRF`` header and, if the browser says where it came from, an ``Origin`` of this host."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path

from .._exceptions import ConfigurationError
from .._net import is_loopback
from ..config import Settings

__all__ = ["CSRF_COOKIE", "CSRF_HEADER", "SESSION_COOKIE", "ConsoleGuard", "console_token", "is_loopback"]

SESSION_COOKIE = "pywats_console_session"
CSRF_COOKIE = "pywats_console_csrf"
CSRF_HEADER = "x-console-csrf"


def console_token(settings: Settings) -> str | None:
    """The token from ``[console] token_file`` or ``PYWATS_EVENTS_CONSOLE_TOKEN`` (``console.token``)."""
    c = settings.console
    if c.token_file is not None:
        try:
            token = Path(c.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigurationError("console.token_file", f"cannot read it: {exc.strerror}") from exc
        if not token:
            raise ConfigurationError("console.token_file", "the file is empty")
        return token
    if c.token is not None and c.token.get_secret_value().strip():
        return c.token.get_secret_value().strip()
    return None


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve actions to the network without a token."""
    if token is None and not is_loopback(host):
        raise ConfigurationError(
            "listener.metrics_host",
            f"the console would listen on {host} without a token: set [console] token_file or "
            "PYWATS_EVENTS_CONSOLE_TOKEN, bind to 127.0.0.1, or set [console] enabled = false",
        )


@dataclass
class ConsoleGuard:
    """Checks the token and the request's origin; `token_id` names the token in the action log."""

    token: str | None

    def __post_init__(self) -> None:
        # the session cookie is derived from the token, never the token itself
        self._session_key = secrets.token_bytes(32)

    @classmethod
    def from_settings(cls, settings: Settings) -> ConsoleGuard:
        return cls(console_token(settings))

    @property
    def token_id(self) -> str:
        """A short, stable name of the token that cannot be turned back into it."""
        if self.token is None:
            return "-"
        return "tok-" + hashlib.sha256(self.token.encode()).hexdigest()[:8]

    @property
    def writable(self) -> bool:
        return self.token is not None

    def session_value(self) -> str:
        assert self.token is not None
        return hmac.new(self._session_key, self.token.encode(), "sha256").hexdigest()

    def token_ok(self, presented: str | None) -> bool:
        return bool(self.token and presented and hmac.compare_digest(presented.encode(), self.token.encode()))

    def session_ok(self, cookie: str | None) -> bool:
        return bool(self.token and cookie and hmac.compare_digest(cookie, self.session_value()))

    @staticmethod
    def new_csrf() -> str:
        return secrets.token_urlsafe(24)

    @staticmethod
    def csrf_ok(cookie: str | None, header: str | None) -> bool:
        return bool(cookie and header and hmac.compare_digest(cookie, header))

    @staticmethod
    def origin_ok(origin: str | None, host_header: str | None) -> bool:
        """A browser names the page a POST came from; it must be this console (scheme-agnostic host:port)."""
        if origin is None:
            return True  # not a browser (curl with the bearer token); the CSRF double submit still applies
        if origin == "null" or host_header is None:
            return False
        _, _, rest = origin.partition("://")
        return rest.rstrip("/") == host_header
