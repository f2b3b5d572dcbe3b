"""The application's composition root: what `pywats-events run` builds from the settings and runs.

Modules, one concept each:

``composition``
    settings → codec, handler plugins, journal, DLQ, quarantine, bus (`build_parts`) and transports.
``runner``
    `Listener`: the run loop, signals, progress, status snapshot, draining on stop.
``outcome``
    `RunSummary` (and its exit code), `Unfinished`, `DeferralWatch`.
``dead_letters``
    `replay_dead_letters`: dead letters back through the handler that failed them.
``instrumentation``
    `MeteredCodec`: inbound messages counted around any codec.
``status``
    what the stores and the running listener's snapshot say (`pywats-events status`).
``settlement``
    distributed mode: handlers' failures recorded per event, so a transport settles a broker message
    only after the handlers finished (`SettlingHandler`, `Settlements`).
``builtin_transports``
    the core's own transport plugins: replay and MQTT.
"""

from __future__ import annotations

from .composition import ListenerParts, build_parts, build_transports, check_plugin_tables, run_cleanups
from .dead_letters import ReplayResult, replay_dead_letters, replay_journal_settings
from .outcome import DeferralWatch, RunSummary, Unfinished
from .runner import Listener, ListenerContext
from .settlement import HandlerFailure, Settlements, SettlingHandler

__all__ = [
    "DeferralWatch",
    "HandlerFailure",
    "Listener",
    "ListenerContext",
    "ListenerParts",
    "ReplayResult",
    "RunSummary",
    "Settlements",
    "SettlingHandler",
    "Unfinished",
    "build_parts",
    "build_transports",
    "check_plugin_tables",
    "replay_dead_letters",
    "replay_journal_settings",
    "run_cleanups",
]
