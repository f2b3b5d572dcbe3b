"""``explorer --check``: where messages deviate from the CFX standard, over real files and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cfx_helpers import CORPUS_DIR, INVALID_CORPUS_FILES

from pywats_cfx.explorer.conformance import FindingKind, check_message, check_paths, check_samples
from pywats_cfx.samples import list_samples


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pywats_cfx.explorer", *args], capture_output=True, text=True, timeout=120
    )


def test_sdk_corpus_findings_are_pinned(corpus_dir: Path) -> None:
    report = check_paths([corpus_dir / "messages"])
    assert len(report.messages) == 222
    assert report.counts() == {
        "undecodable": 10,
        "unknown_message": 0,
        "unknown_version": 0,
        "unknown_field": 0,
        "wrong_type": 0,
        "placeholder": 1,
        "missing_required": 41,
        "timestamp_without_offset": 0,
    }
    undecodable = {
        Path(m.label).name for m in report.messages for f in m.findings if f.kind is FindingKind.UNDECODABLE
    }
    assert undecodable == INVALID_CORPUS_FILES
    # the 22 messages the reference describes are checked in depth, the others by name and envelope
    assert sum(m.body_checked for m in report.messages) == 34


def test_bundled_samples_findings_are_pinned() -> None:
    report = check_samples(list_samples())
    assert report.counts()["missing_required"] == 11  # MaterialPackage.GreyZone left out
    assert report.counts()["wrong_type"] == 1
    [wrong] = [f for m in report.messages for f in m.findings if f.kind is FindingKind.WRONG_TYPE]
    assert wrong.path == "MessageBody.TestedUnits[0].Tests[4].SymptomsFound[0].Status"
    assert sum(report.counts().values()) == 12


def test_each_kind_of_deviation_is_found_with_the_closest_name() -> None:
    message = {
        "MessageName": "CFX.Production.WorkCompleted",
        "Version": "3.0",
        "TimeStamp": "2024-01-01T10:00:00",
        "UniqueID": "00000000-0000-0000-0000-000000000000",
        "MessageBody": {
            "TransactionID": "string",
            "result": "Completed",
            "UnitCont": 2,
            "Units": [
                {
                    "UnitIdentifier": 5,
                    "PositionNumber": 1,
                    "X": 0,
                    "Y": 0,
                    "Rotation": 0,
                    "FlipX": False,
                    "FlipY": False,
                    "Status": "Pass",
                }
            ],
        },
    }
    findings = {(f.kind, f.path): f for f in check_message(message, label="m").findings}
    assert set(findings) == {
        (FindingKind.UNKNOWN_VERSION, "Version"),
        (FindingKind.TIMESTAMP_WITHOUT_OFFSET, "TimeStamp"),
        (FindingKind.PLACEHOLDER, "UniqueID"),
        (FindingKind.PLACEHOLDER, "MessageBody.TransactionID"),
        (FindingKind.UNKNOWN_FIELD, "MessageBody.result"),
        (FindingKind.UNKNOWN_FIELD, "MessageBody.UnitCont"),
        (FindingKind.WRONG_TYPE, "MessageBody.Units[0].UnitIdentifier"),
        (FindingKind.MISSING_REQUIRED, "MessageBody.Result"),
    }
    assert findings[(FindingKind.UNKNOWN_FIELD, "MessageBody.result")].suggestion == "Result"
    assert findings[(FindingKind.UNKNOWN_FIELD, "MessageBody.UnitCont")].suggestion == "UnitCount"
    unknown = check_message({"MessageName": "CFX.Production.WorkComplete", "MessageBody": {}}, label="n")
    [finding] = unknown.findings
    assert (
        finding.kind is FindingKind.UNKNOWN_MESSAGE and finding.suggestion == "CFX.Production.WorkCompleted"
    )


def test_a_cfx_message_the_reference_does_not_describe_is_known_by_name() -> None:
    result = check_message(
        {"MessageName": "CFX.AreYouThereRequest", "Version": "2.1", "MessageBody": {"CFXHandle": "x"}},
        label="m",
    )
    assert result.findings == () and not result.body_checked


def test_cli_check_exit_codes_and_json(tmp_path: Path) -> None:
    clean = run("--check", "--sample", "work_started")
    assert clean.returncode == 0, clean.stderr
    assert "all conform to CFX" in clean.stdout
    lines = tmp_path / "capture.jsonl"
    good = json.loads((Path(__file__).parents[2] / "pywats_cfx/samples/work_started.json").read_text())
    bad = {**good, "MessageBody": {**good["MessageBody"], "primaryIdentifier": "X"}}
    lines.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    proc = run("--check", "--json", "--file", str(lines))
    assert proc.returncode == 1
    data = json.loads(proc.stdout)
    assert [len(m["findings"]) for m in data["messages"]] == [0, 1]
    [finding] = data["messages"][1]["findings"]
    assert finding == {
        "kind": "unknown_field",
        "path": "MessageBody.primaryIdentifier",
        "detail": "not a property of CFX.Production.WorkStarted",
        "suggestion": "PrimaryIdentifier",
    }
    text = run("--check", "--file", str(lines))
    assert text.returncode == 1 and "did you mean PrimaryIdentifier?" in text.stdout


def test_cli_check_over_the_corpus_directory(corpus_dir: Path) -> None:
    proc = run("--check", "--json", "--file", str(CORPUS_DIR / "messages"))
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["counts"]["undecodable"] == 10
