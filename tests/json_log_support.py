"""Capturing log lines as `--log-json` writes them, for tests that read their fields."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pywats_events.logging_setup import DeliveryContextFilter, JsonFormatter


@contextmanager
def json_log(logger: str = "", *, delivery_context: bool = True) -> Iterator[io.StringIO]:
    """JSON lines of `logger` (the root: every logger) at INFO, through the filter `configure_logging`
    installs unless `delivery_context` is false, until the block ends."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    if delivery_context:
        handler.addFilter(DeliveryContextFilter())
    handler.setFormatter(JsonFormatter())
    target = logging.getLogger(logger or None)
    old_level = target.level
    target.addHandler(handler)
    target.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        target.removeHandler(handler)
        target.setLevel(old_level)


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
