"""Runs inside a throwaway venv with `pywats-api`: parses WSJF documents with the vendor's `UUTReport`.

Usage: python validate_wsjf.py <documents.json>  → prints a JSON list, one result per document:
{"ok": bool, "error": str | null, "lost": [paths of our keys the vendor model dropped],
"changed": [paths of our values the vendor model altered]}.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from pywats.domains.report.report_models import UUTReport


def compare(ours: Any, theirs: Any, lost: list[str], changed: list[str], path: str = "") -> None:
    """Record our keys missing after the vendor model's round trip (unknown keys are silently ignored by
    it) and our values it altered (e.g. a status it normalised)."""
    if isinstance(ours, dict):
        if not isinstance(theirs, dict):
            changed.append(path or "/")
            return
        for key, value in ours.items():
            if key not in theirs:
                lost.append(f"{path}/{key}")
            else:
                compare(value, theirs[key], lost, changed, f"{path}/{key}")
    elif isinstance(ours, list):
        if not isinstance(theirs, list) or len(theirs) != len(ours):
            changed.append(path)
            return
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            compare(a, b, lost, changed, f"{path}[{i}]")
    elif ours != theirs and not _same_number(ours, theirs):
        changed.append(f"{path}: {ours!r} -> {theirs!r}")


def _same_number(a: Any, b: Any) -> bool:
    try:
        return float(a) == float(b) and not isinstance(a, bool)
    except (TypeError, ValueError):
        return False


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as f:
        documents = json.load(f)
    results = []
    for doc in documents:
        try:
            report = UUTReport.model_validate(doc)
            dumped = report.model_dump(mode="json", by_alias=True, exclude_none=True)
            lost: list[str] = []
            changed: list[str] = []
            compare(doc, dumped, lost, changed)
            results.append({"ok": not lost and not changed, "error": None, "lost": lost, "changed": changed})
        except Exception as exc:  # report every document, not just the first failure
            error = f"{type(exc).__name__}: {exc}"
            results.append({"ok": False, "error": error, "lost": [], "changed": []})
    print(json.dumps(results))


if __name__ == "__main__":
    main()
