"""The `pywats-events` command: `run` the listener, inspect `dlq`, `outbox`, `quarantine`, `status`, list
the installed `plugins`, start a new one (`plugin new`), open the operator `console`."""

from . import console, dlq, plugin_new, plugins, quarantine, run, status  # noqa: F401  (each registers its commands on `app`)
from .app import app, main

__all__ = ["app", "main"]
