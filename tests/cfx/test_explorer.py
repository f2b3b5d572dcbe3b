"""The explorer CLI, run as users run it (a subprocess)."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pywats_cfx.samples import list_samples, load_sample


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pywats_cfx.explorer", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": "120", "PATH": "", "PYTHONIOENCODING": "utf-8"},
    )


def test_list_json() -> None:
    proc = run("--list", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["name"] for r in rows] == list_samples()
    assert all(r["message_name"].startswith("CFX.") and r["description"] for r in rows)


def test_list_human() -> None:
    proc = run("--list")
    assert proc.returncode == 0 and "units_tested_fct" in proc.stdout


def test_sample_shows_raw_model_and_events() -> None:
    proc = run("--sample", "units_tested_fct")
    assert proc.returncode == 0, proc.stderr
    for text in (
        "raw message",
        "decoded CFX.Production.TestAndInspection.UnitsTested",
        "test.result",
        "MB-4471-000145",
    ):
        assert text in proc.stdout


def test_convert_json_has_events_and_model() -> None:
    proc = run("--convert", "work_completed_pass", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    [msg] = report["messages"]
    assert msg["message_name"] == "CFX.Production.WorkCompleted"
    assert msg["model"]["MessageBody"]["Result"] == "Completed"
    assert [e["payload"]["unit_serial"] for e in msg["events"]] == ["MB-4471-000145", "MB-4471-000146"]
    assert report["quarantined"] == []


def test_file_gzipped_bare_body_with_message_name(tmp_path: Path) -> None:
    body = json.loads(load_sample("fault_cleared"))["MessageBody"]
    del body["$type"]
    path = tmp_path / "capture.bin"
    path.write_bytes(gzip.compress(json.dumps(body).encode()))
    proc = run("--file", str(path), "--message-name", "CFX.ResourcePerformance.FaultCleared", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["encoding"] == ["gzip"]
    assert report["messages"][0]["events"][0]["event_type"] == "asset.fault_cleared"


def test_file_bare_body_without_name_fails_clearly(tmp_path: Path) -> None:
    path = tmp_path / "body.json"
    path.write_text(json.dumps({"FaultOccurrenceId": "x"}))
    proc = run("--file", str(path))
    assert proc.returncode == 1
    assert "without a message name" in proc.stderr


def test_unknown_sample_exit_code() -> None:
    proc = run("--sample", "does_not_exist")
    assert proc.returncode == 1
    assert "unknown sample 'does_not_exist'" in proc.stderr and "units_tested_fct" in proc.stderr


@pytest.mark.parametrize("content", [b"\x1f\x8b\x08garbage", b"{not json", b""])
def test_undecodable_file_exit_code(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.bin"
    path.write_bytes(content)
    proc = run("--file", str(path), "--json")
    assert proc.returncode == 1
    assert "could not decode" in proc.stderr
    assert json.loads(proc.stdout)["quarantined"]


def test_missing_file_exit_code(tmp_path: Path) -> None:
    proc = run("--file", str(tmp_path / "nope.bin"))
    assert proc.returncode == 1 and "cannot read" in proc.stderr


def test_python_dash_m_package_runs_explorer() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pywats_cfx", "--list", "--json"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and json.loads(proc.stdout)


def test_wats_preview_section_when_handlers_offer_it() -> None:
    try:
        from handlers.preview import preview_requests  # noqa: F401
    except Exception as exc:  # the explorer must work without the WATS handlers
        pytest.skip(f"handlers.preview not importable: {exc}")
    proc = run("--convert", "units_tested_fct", "--json")
    assert proc.returncode == 0, proc.stderr
    wats = json.loads(proc.stdout)["wats"]
    assert isinstance(wats, list) and wats
    assert any("MB-4471-000145" in json.dumps(r) for r in wats)
