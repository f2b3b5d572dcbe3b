"""docs/architecture.md names the module of each step: every path it names must exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
PATH = re.compile(r"`((?:pywats_events|pywats_cfx|handlers|samples)/[\w./-]*)`")


def test_every_module_the_architecture_doc_names_exists() -> None:
    named = PATH.findall(DOC.read_text(encoding="utf-8"))
    assert len(named) >= 20, "the data-flow table names a module per step"
    missing = sorted({p for p in named if not (ROOT / p).exists()})
    assert not missing, f"docs/architecture.md names paths that do not exist: {missing}"


def test_the_data_flow_covers_broker_to_wats() -> None:
    text = DOC.read_text(encoding="utf-8")
    for needed in ("pywats_cfx/amqp/transport.py", "pywats_cfx/codec.py", "pywats_events/journal/sqlite.py",
                   "pywats_events/bus/subscription.py", "handlers/wats/sender.py"):  # fmt: skip
        assert needed in text
