"""Previews: what a handler plugin would send for some events, worked out offline.

A handler plugin may offer a dry run of its handlers through the entry point group
``pywats_events.previews`` (see `pywats_events.plugins`): the entry point names a factory
``() -> Preview``. Tools that show what a message becomes (``python -m pywats_cfx.explorer``) run every
installed preview on the decoded events, so they can show the outcome without knowing the plugin. The bus
itself never runs a preview.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._event import Event

__all__ = ["Preview", "PreviewOutcome", "PreviewRequest"]


@dataclass(frozen=True)
class PreviewRequest:
    """One request the handlers would send."""

    method: str
    path: str
    #: one line for people: the call and the fields that matter to the receiving system
    summary: str
    #: the request as JSON-ready data
    data: dict[str, Any]
    #: where `data` carries a stand-in instead of a real value (``json.pn``, ``params.partNumber``, ``path``)
    placeholders: tuple[str, ...] = ()


@dataclass(frozen=True)
class PreviewOutcome:
    """What the handlers would do with one event."""

    #: names of the handlers that take the event's type (empty: the plugin never hears of it)
    handlers: tuple[str, ...] = ()
    requests: tuple[PreviewRequest, ...] = ()
    #: why the event would be dead-lettered, else None
    error: str | None = None


@dataclass(frozen=True)
class Preview:
    """A handler plugin's dry run, as a plugin's ``pywats_events.previews`` factory returns it.

    Example::

        def my_preview() -> Preview:
            return Preview(target="MES", run=lambda events: [PreviewOutcome() for _ in events])
    """

    #: the system the handlers send to, as people call it (``WATS``)
    target: str
    #: the events → one `PreviewOutcome` per event, in the same order; runs without any server
    run: Callable[[Sequence[Event]], Sequence[PreviewOutcome]]
    #: stand-in values the dry run uses where a real run would ask its configuration or the server,
    #: by field name (``{"partNumber": "PREVIEW-PN"}``)
    placeholders: Mapping[str, object] = field(default_factory=dict)
    #: shown under the requests when one of them carries a placeholder: what the stand-ins mean
    placeholder_note: str = ""
    #: shown under the requests when there is any: what the dry run assumed
    note: str = ""
