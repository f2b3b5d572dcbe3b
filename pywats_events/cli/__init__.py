"""The `pywats-events` command: `run` the listener; inspect `dlq`, `outbox`, `quarantine`, `status`; check
and show the `config`; list the installed `plugins`, start a new one (`plugin new`); open the `console`."""

from . import configuration, console, dlq, plugin_new, plugins, quarantine, run, status  # noqa: F401
from .app import app, main

__all__ = ["app", "main"]
