"""Logging for the listener: plain or JSON lines, event/correlation ids, credentials redacted everywhere.

`DeliveryContextFilter` (installed by `configure_logging`) stamps every record emitted during a handler
call with that call's event id, correlation id, event type and handler name, whatever logger wrote it
(the handler's own, the WATS sender's, a plugin's), so JSON lines join with the message and DLQ entry.

Redaction runs as a filter on the root handler, so every record (ours, aio-pika's, httpx's) passes through
it: passwords in URLs, bearer/basic tokens, `token=` style parameters and any secret registered with
`register_secret` (e.g. the WATS token read at start-up) are replaced by ``***``.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import datetime, timezone
from typing import Any

from ._log_context import delivery_fields
from .tracing import log_ids

__all__ = [
    "DeliveryContextFilter",
    "JsonFormatter",
    "RedactingFilter",
    "configure_logging",
    "redact",
    "register_secret",
]

_SECRETS: set[str] = set()

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # scheme://user:password@host → scheme://user:***@host
    (re.compile(r"(?P<pre>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)[^@\s/]+(?P<post>@)"), r"\g<pre>***\g<post>"),
    (re.compile(r"(?i)(?P<pre>\b(?:bearer|basic)\s+)[A-Za-z0-9._~+/=-]+"), r"\g<pre>***"),
    # token=abc, password = "x" (query strings, settings, env dumps)
    (
        re.compile(r"(?i)(?P<pre>\b(?:token|password|passwd|secret|api[_-]?key)\b\s*=\s*[\"']?)[^\s\"'&,;]+"),
        r"\g<pre>***",
    ),
    # "token": "abc", 'password': 'x' (JSON, dict reprs); the value must be quoted, so prose such as
    # "wats.token: no token: set WATS_AUTH_TOKEN" stays readable
    (
        re.compile(
            r"(?i)(?P<pre>[\"']?\b(?:token|password|passwd|secret|api[_-]?key)[\"']?\s*:\s*[\"'])[^\"']+"
        ),
        r"\g<pre>***",
    ),
    # Authorization: <raw token> (a header without Basic/Bearer)
    (
        re.compile(r"(?i)(?P<pre>\bauthorization[\"']?\s*[=:]\s*[\"']?)(?!(?:basic|bearer)\s)[^\s\"'&,;]+"),
        r"\g<pre>***",
    ),
]


def register_secret(value: str | None) -> None:
    """Redact this exact value from all log output from now on (ignored if too short to be a secret)."""
    if value and len(value) >= 4:
        _SECRETS.add(value)


def redact(text: str) -> str:
    """Removes credentials from `text` (URLs with passwords, tokens, registered secrets)."""
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, "***")
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message or record.args:
            record.msg = clean
            record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


_CONTEXT_FIELDS = (
    "event_id",
    "correlation_id",
    "event_type",
    "handler",
    "transport",
    "seq",
    "trace_id",
    "span_id",
)


def _add_delivery_fields(record: logging.LogRecord) -> None:
    """Fields of the running handler call, where the record does not set its own (`extra=` wins), and
    the ids of the current span when tracing."""
    fields = delivery_fields()
    if fields is not None:
        for name, value in fields.items():
            if getattr(record, name, None) is None:
                setattr(record, name, value)
    if getattr(record, "trace_id", None) is None:
        ids = log_ids()
        if ids is not None:
            record.trace_id, record.span_id = ids


class DeliveryContextFilter(logging.Filter):
    """Adds event_id, correlation_id, event_type and handler of the handler call the record was emitted
    in (install it on a handler: handler filters see records of every logger)."""

    def filter(self, record: logging.LogRecord) -> bool:
        _add_delivery_fields(record)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, context ids when present (event, handler,
    and OpenTelemetry trace_id/span_id when tracing), exception text."""

    def format(self, record: logging.LogRecord) -> str:
        _add_delivery_fields(record)  # also when used without `configure_logging`'s filter
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                data[name] = value
        if record.exc_text:
            data["exception"] = record.exc_text
        elif record.exc_info:
            data["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(data, default=str)


class _PlainFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        _add_delivery_fields(record)
        text = super().format(record)
        ids = [
            f"{n}={getattr(record, n)}" for n in ("event_id", "correlation_id") if getattr(record, n, None)
        ]
        return f"{text} [{' '.join(ids)}]" if ids else text


class _ConfiguredHandler(logging.StreamHandler):
    """The handler `configure_logging` installs (so a second call replaces it, and only it)."""


def configure_logging(*, level: str = "INFO", json_lines: bool = False, stream: Any = None) -> None:
    """Installs one stderr handler on the root logger (replacing earlier ones from this function)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if isinstance(h, _ConfiguredHandler):
            root.removeHandler(h)
    handler = _ConfiguredHandler(stream or sys.stderr)
    handler.addFilter(DeliveryContextFilter())
    handler.addFilter(RedactingFilter())
    handler.setFormatter(
        JsonFormatter()
        if json_lines
        else _PlainFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    )
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("aiormq", "aio_pika", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
