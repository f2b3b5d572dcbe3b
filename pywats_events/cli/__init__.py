"""The `pywats-events` command: `run` the listener; `dlq`, `outbox`, `quarantine`, `status`, `config`."""

from . import configuration, dlq, quarantine, run, status  # noqa: F401  (each registers its commands on `app`)
from .app import app, main

__all__ = ["app", "main"]
