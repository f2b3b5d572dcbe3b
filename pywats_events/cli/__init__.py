"""The `pywats-events` command: `run` the listener, inspect `dlq`, `outbox`, `quarantine`, `status`."""

from . import dlq, quarantine, run, status  # noqa: F401  (each registers its commands on `app`)
from .app import app, main

__all__ = ["app", "main"]
