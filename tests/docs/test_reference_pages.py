"""The generated reference pages in docs/reference/ are what the code generates now."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pywats_events import docgen

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "reference"


def test_committed_pages_are_current(tmp_path: Path) -> None:
    written = docgen.write(tmp_path)
    assert {p.name for p in written} == set(docgen.PAGES)
    for page in written:
        committed = REFERENCE / page.name
        assert committed.is_file(), f"{committed} is missing: run python -m pywats_events.docgen"
        assert committed.read_text(encoding="utf-8") == page.read_text(encoding="utf-8"), (
            f"{committed} is stale: run python -m pywats_events.docgen"
        )


def test_check_names_a_stale_page(tmp_path: Path) -> None:
    docgen.write(tmp_path)
    page = tmp_path / "configuration.md"
    page.write_text(page.read_text(encoding="utf-8").replace("drain_timeout", "drain_time"), encoding="utf-8")
    run = subprocess.run(
        [sys.executable, "-m", "pywats_events.docgen", "--check", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1
    assert "configuration.md" in run.stderr and "mapping.md" not in run.stderr


def test_pages_cover_every_mapped_message_and_setting() -> None:
    from handlers.config import WatsHandlersConfig
    from pywats_cfx import MAPPED_MESSAGES

    mapping = (REFERENCE / "mapping.md").read_text(encoding="utf-8")
    for message, event_type in MAPPED_MESSAGES.items():
        assert f"| `{message}` | `{event_type.value}` |" in mapping
        assert f"\n| `{message}` | `" in mapping.split("### What codec `cfx` reads", 1)[1]
    # the typed description, structures included
    assert "`TestedUnits` (list of TestedUnit)" in mapping
    assert "`Measurements` (list of NumericMeasurement or BooleanMeasurement or TextMeasurement)" in mapping
    assert "\n| `NumericValue` | `Value` (number), `ValueUnits` (text)" in mapping
    configuration = (REFERENCE / "configuration.md").read_text(encoding="utf-8")
    assert "PYWATS_EVENTS_AMQP_URL`<br>`--amqp`" in configuration
    for name in WatsHandlersConfig.model_fields:
        assert f"| `{name}` |" in configuration or f"`[handlers.wats.{name}]`" in configuration
