"""The `pywats-events` command: `run` the listener, inspect `dlq`, `outbox`, `quarantine`, `status`."""

from ._app import app, main

__all__ = ["app", "main"]
