"""CFX explorer: what does a CFX message become?

    python -m pywats_cfx.explorer --list
    python -m pywats_cfx.explorer --sample units_tested_fct      # raw, decoded model, events, previews
    python -m pywats_cfx.explorer --convert units_tested_fct     # the same without the raw message
    python -m pywats_cfx.explorer --file capture.bin [--message-name CFX.Production.WorkCompleted]
    ... --json                                                   # machine-readable

`report` builds an `ExplorerReport` from bytes or a bundled sample; `render` turns it into text or
JSON-ready data; `cli` is the command line. "What WATS would receive" comes from a preview plugin
(entry point group ``pywats_events.previews``, which the WATS handlers install), so this package never
imports WATS code; without a plugin the explorer says that section is not shown. The preview runs
offline: the values it cannot know are stand-ins, marked ``*``.
"""

from __future__ import annotations

from .cli import main
from .render import render_report, render_samples, report_to_json, samples_to_json
from .report import (
    ExplorerError,
    ExplorerReport,
    MessageReport,
    PreviewReport,
    QuarantinedInput,
    SampleInfo,
    build_report,
    bundled_samples,
    read_capture,
    sample_report,
)

__all__ = [
    "ExplorerError",
    "ExplorerReport",
    "MessageReport",
    "PreviewReport",
    "QuarantinedInput",
    "SampleInfo",
    "build_report",
    "bundled_samples",
    "main",
    "read_capture",
    "render_report",
    "render_samples",
    "report_to_json",
    "sample_report",
    "samples_to_json",
]
