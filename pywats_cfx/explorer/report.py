"""The explorer's report: what one captured or bundled CFX message becomes, built without any output.

`build_report` decodes the bytes (wire layers, envelopes, typed models, domain events) and runs every
installed preview plugin (``pywats_events.previews``, e.g. the WATS handlers' dry run) on the events.
The CFX adapter never imports a handler package: a missing preview is an empty `ExplorerReport.previews`,
a broken one a `PreviewReport` with its `error`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pywats_events import Event
from pywats_events.plugins import preview_factories
from pywats_events.previews import Preview, PreviewOutcome

from .._wire import WireError, unwrap
from ..codec import CFXCodec
from ..models import parse_envelope
from ..received import CFXEnvelope
from ..samples import SAMPLE_DESCRIPTIONS, UnknownSampleError, list_samples, load_sample
from ..schema import Envelope

__all__ = [
    "ExplorerError",
    "ExplorerReport",
    "MessageReport",
    "PreviewReport",
    "QuarantinedInput",
    "SampleInfo",
    "build_report",
    "bundled_samples",
    "read_capture",
    "sample_report",
]

_CFX_NAME_IN_TEXT = re.compile(r"CFX(?:\.[A-Z][A-Za-z0-9]*)+")


class ExplorerError(Exception):
    """The input cannot be read at all (unknown sample, missing file, a directory); the message says why."""


@dataclass(frozen=True)
class SampleInfo:
    """One bundled sample, as ``--list`` shows it."""

    name: str
    message_name: str | None
    description: str


@dataclass(frozen=True)
class MessageReport:
    """One envelope of the input: its typed model and the domain events it maps to."""

    envelope: CFXEnvelope
    #: the envelope read into its message's struct (`pywats_cfx.schema`); None when that failed (see
    #: `model_error`)
    model: Envelope[Any] | None
    model_error: str | None
    events: tuple[Event, ...]

    @property
    def message_name(self) -> str:
        return self.envelope.message_name


@dataclass(frozen=True)
class QuarantinedInput:
    """Input the codec could not decode, and why."""

    reason: str
    size: int


@dataclass(frozen=True)
class PreviewReport:
    """What one preview plugin says its handlers would send for the report's events."""

    #: the plugin's entry point name (``wats``); the JSON keys of its section start with it
    name: str
    #: the system the handlers send to (``WATS``); the entry point name when the plugin did not load
    target: str
    #: every event of the report with what the handlers would do with it, in order; empty when the
    #: preview failed
    per_event: tuple[tuple[Event, PreviewOutcome], ...] = ()
    placeholders: Mapping[str, object] = field(default_factory=dict)
    placeholder_note: str = ""
    note: str = ""
    #: why the preview could not be loaded or run, else None
    error: str | None = None


@dataclass(frozen=True)
class ExplorerReport:
    """Everything the explorer shows about one input."""

    #: what was read, for people: ``sample units_tested_fct`` or the file's path
    label: str
    size: int
    #: the wire layers peeled off, in order (``gzip``, ``amqp-1.0``, ``bom``)
    encoding: tuple[str, ...]
    #: the message text after the wire layers; None when the input was not read (too big)
    text: bytes | None
    #: False when the wire layers could not be peeled (`text` is then the input as it came)
    peeled: bool
    messages: tuple[MessageReport, ...] = ()
    quarantined: tuple[QuarantinedInput, ...] = ()
    #: one per installed preview plugin; empty when there are no events or no plugin is installed
    previews: tuple[PreviewReport, ...] = ()

    @property
    def events(self) -> list[Event]:
        return [e for m in self.messages for e in m.events]

    @property
    def failure(self) -> str | None:
        """Why (part of) the input could not be decoded, with a hint where one helps; None if all decoded."""
        if not self.quarantined:
            return None
        reasons = "; ".join(q.reason + _hint(q.reason, self.label) for q in self.quarantined)
        return f"{self.label}: could not decode: {reasons}"


PreviewFactories = Mapping[str, Callable[[], Preview]]


def build_report(
    raw: bytes,
    *,
    label: str,
    codec: CFXCodec | None = None,
    message_name: str | None = None,
    topic: str | None = None,
    previews: PreviewFactories | None = None,
) -> ExplorerReport:
    """Decode `raw` and preview its events.

    Args:
        raw: the message as received (gzipped or not, AMQP 1.0 framed or not).
        label: how the input is named in the output.
        codec: the codec to decode with (default: `CFXCodec()`).
        message_name: names a bare MessageBody without ``$type``.
        topic: the routing key or topic the message arrived on.
        previews: name → factory of the previews to run; default: the installed
            ``pywats_events.previews`` plugins.
    """
    codec = codec or CFXCodec()
    decoded, quarantined = codec.decode_messages(raw, None, topic, message_name=message_name)
    try:
        text, layers = unwrap(raw, None, codec.limits)
        peeled = True
    except WireError:
        text, layers, peeled = raw, [], False
    messages = tuple(_message_report(m.envelope, m.events) for m in decoded)
    events = [e for m in messages for e in m.events]
    factories = preview_factories() if previews is None else previews
    return ExplorerReport(
        label=label,
        size=len(raw),
        encoding=tuple(layers),
        text=text,
        peeled=peeled,
        messages=messages,
        quarantined=tuple(QuarantinedInput(q.reason, len(q.raw)) for q in quarantined),
        previews=tuple(_run_preview(name, make, events) for name, make in factories.items() if events),
    )


def sample_report(
    name: str,
    *,
    codec: CFXCodec | None = None,
    message_name: str | None = None,
    topic: str | None = None,
    previews: PreviewFactories | None = None,
) -> ExplorerReport:
    """`build_report` of a bundled sample; an `ExplorerError` for an unknown name."""
    try:
        raw = load_sample(name)
    except UnknownSampleError as exc:
        raise ExplorerError(str(exc)) from None
    return build_report(
        raw, label=f"sample {name}", codec=codec, message_name=message_name, topic=topic, previews=previews
    )


def read_capture(path: Path, codec: CFXCodec | None = None) -> bytes | ExplorerReport:
    """The file's bytes, or a report of the refusal when it is too big to decode (it is then not read).

    Raises `ExplorerError` when the file cannot be read.
    """
    codec = codec or CFXCodec()
    try:
        if path.is_dir():
            raise ExplorerError(f"{path} is a directory: give one captured message file")
        size = path.stat().st_size
        limit = codec.limits.max_compressed_bytes
        if size > limit:  # refuse before reading, like the codec would after
            reason = f"body of {size} bytes exceeds the {limit}-byte limit"
            return ExplorerReport(
                label=str(path),
                size=size,
                encoding=(),
                text=None,
                peeled=False,
                quarantined=(QuarantinedInput(reason, size),),
            )
        return path.read_bytes()
    except OSError as exc:
        raise ExplorerError(f"cannot read {path}: {exc.strerror or exc}") from None


def bundled_samples() -> list[SampleInfo]:
    """The bundled samples with their message names and descriptions."""
    return [
        SampleInfo(name, json.loads(load_sample(name)).get("MessageName"), SAMPLE_DESCRIPTIONS.get(name, ""))
        for name in list_samples()
    ]


def _message_report(envelope: CFXEnvelope, events: Sequence[Event]) -> MessageReport:
    try:
        model: Envelope[Any] | None = parse_envelope(envelope)
        error = None
    except Exception as exc:  # the typed view is informative only; events are what counts
        model, error = None, f"{type(exc).__name__}: {exc}"
    return MessageReport(envelope=envelope, model=model, model_error=error, events=tuple(events))


def _run_preview(name: str, make: Callable[[], Preview], events: Sequence[Event]) -> PreviewReport:
    """The plugin's outcome for `events`; a plugin that fails must not hide the decoded message."""
    try:
        preview = make()
    except Exception as exc:
        return PreviewReport(name, name, error=f"the plugin cannot be loaded: {type(exc).__name__}: {exc}")
    try:
        outcomes = list(preview.run(events))
        if len(outcomes) != len(events):
            raise ValueError(f"{len(outcomes)} outcomes for {len(events)} events")
    except Exception as exc:
        return PreviewReport(name, preview.target, error=f"{type(exc).__name__}: {exc}")
    return PreviewReport(
        name,
        preview.target,
        per_event=tuple(zip(events, outcomes, strict=True)),
        placeholders=preview.placeholders,
        placeholder_note=preview.placeholder_note,
        note=preview.note,
    )


def _hint(reason: str, label: str) -> str:
    """What the user can do about a quarantine reason."""
    if "without a message name" in reason:
        guess = _CFX_NAME_IN_TEXT.search(Path(label).name)
        example = guess.group(0) if guess else "CFX.Production.WorkStarted"
        return f" (a bare MessageBody: name it with --message-name, e.g. --message-name {example})"
    return ""
