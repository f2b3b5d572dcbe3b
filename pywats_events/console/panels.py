"""What a plugin contributes to the console: a panel of counts and rows, and actions that change state.

The core knows no adapter, so a plugin (the WATS handlers' outbox, say) describes what it wants shown in
these plain terms and appends the panel to ``PluginContext.console_panels``; the console renders it and
guards its actions with the token like its own."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ConsolePanel", "PanelAction", "PanelView"]


@dataclass(frozen=True)
class PanelView:
    """A snapshot: ``counts`` (label → number or text, shown as tiles) and a bounded table of ``rows``."""

    counts: Mapping[str, int | float | str] = field(default_factory=dict)
    columns: Sequence[str] = ()
    rows: Sequence[Mapping[str, Any]] = ()
    #: a line under the tiles (e.g. where the store lives, or the last push's result)
    note: str = ""


@dataclass(frozen=True)
class PanelAction:
    """A button: `run` does the work and returns what to tell the operator (one line)."""

    label: str
    run: Callable[[], Awaitable[str]]
    #: when set, the page asks this question first
    confirm: str | None = None


@dataclass(frozen=True)
class ConsolePanel:
    """A page of the console contributed by a plugin, at ``/panels/<name>``."""

    name: str
    title: str
    #: called for every refresh of the page (keep it quick: a few indexed queries)
    view: Callable[[], PanelView]
    actions: Mapping[str, PanelAction] = field(default_factory=dict)
    #: a count shown on the overview (label, function), e.g. ("outbox pending", ...)
    overview: Sequence[tuple[str, Callable[[], int]]] = ()
