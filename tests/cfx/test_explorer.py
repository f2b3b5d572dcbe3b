"""The explorer CLI, run as users run it (a subprocess)."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pywats_cfx.explorer import build_report, render_report, report_to_json
from pywats_cfx.samples import list_samples, load_sample


def run(
    *args: str, columns: int = 120, encoding: str = "utf-8", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pywats_cfx.explorer", *args],
        capture_output=True,
        text=True,
        encoding=encoding,
        timeout=60,
        env={"COLUMNS": str(columns), "PATH": "", "PYTHONIOENCODING": encoding, **(env or {})},
    )


def needs_preview() -> None:
    try:
        from handlers.preview import preview, preview_placeholders  # noqa: F401
    except Exception as exc:  # the explorer must work without the WATS handlers
        pytest.skip(f"handlers.preview not importable: {exc}")


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


def test_convert_shows_model_events_and_wats_but_not_raw() -> None:
    proc = run("--convert", "work_completed_pass")
    assert proc.returncode == 0, proc.stderr
    assert "decoded CFX.Production.WorkCompleted" in proc.stdout
    assert "production.work_completed" in proc.stdout
    assert "raw message" not in proc.stdout


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


def test_list_on_a_narrow_terminal_shows_names_in_full() -> None:
    proc = run("--list", columns=60)
    assert proc.returncode == 0, proc.stderr
    assert "…" not in proc.stdout
    for name in list_samples():
        message_name = json.loads(load_sample(name))["MessageName"]
        assert name in proc.stdout.split()
        assert message_name in proc.stdout.split()


def test_human_output_without_a_terminal_is_plain_and_uncropped() -> None:
    proc = run("--sample", "units_tested_fct", columns=60)
    assert proc.returncode == 0, proc.stderr
    assert "\x1b[" not in proc.stdout
    assert all(line == line.rstrip() for line in proc.stdout.splitlines())
    # long values are left whole for the terminal to wrap, not cut at the width
    assert "Suspected bridge between U12 pins 14 and 15 (TXP/TXN) at U12.14" in proc.stdout
    assert "decoded CFX.Production.TestAndInspection.UnitsTested" in proc.stdout


def test_wats_preview_marks_placeholders() -> None:
    needs_preview()
    proc = run("--convert", "units_tested_fct")
    assert proc.returncode == 0, proc.stderr
    section = proc.stdout.split("what WATS would receive", 1)[1]
    assert "POST /api/Report/WSJF" in section and "sn=MB-4471-000145" in section
    assert "pn=PREVIEW-PN*" in section and "processCode=100*" in section
    assert "placeholder" in section

    report = json.loads(run("--convert", "units_tested_fct", "--json").stdout)
    assert report["wats_placeholders"]["partNumber"] == "PREVIEW-PN"
    [request] = report["wats"]
    assert {"json.pn", "json.rev", "json.processCode"} <= set(request["placeholders"])
    assert "json.sn" not in request["placeholders"]


def test_wats_preview_tells_dead_letter_and_unhandled_events() -> None:
    needs_preview()
    proc = run("--convert", "materials_th")
    assert proc.returncode == 0, proc.stderr
    assert "would be dead-lettered" in proc.stdout and "ResolutionError" in proc.stdout
    report = json.loads(run("--convert", "materials_th", "--json").stdout)
    assert report["wats_per_event"][0]["error"]

    proc = run("--convert", "materials_loaded")
    assert "no WATS handler takes this event type" in proc.stdout
    report = json.loads(run("--convert", "materials_loaded", "--json").stdout)
    assert report["wats"] == [] and report["wats_per_event"][0]["handlers"] == []


def test_bare_body_error_suggests_the_name_from_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "cfx-sdk__CFX.Heartbeat.json"
    path.write_text(json.dumps({"CFXHandle": "Acme.Line1.X", "HeartbeatFrequency": "00:01:00"}))
    proc = run("--file", str(path))
    assert proc.returncode == 1
    assert "--message-name CFX.Heartbeat" in proc.stderr
    ok = run("--file", str(path), "--message-name", "CFX.Heartbeat", "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["messages"][0]["message_name"] == "CFX.Heartbeat"


def test_directory_is_a_clear_error(tmp_path: Path) -> None:
    proc = run("--file", str(tmp_path), "--json")
    assert proc.returncode == 1 and proc.stdout == ""
    assert "is a directory" in proc.stderr and "Traceback" not in proc.stderr


def test_oversized_file_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.json"
    with path.open("wb") as f:  # sparse: cheap to create, larger than the codec's body limit
        f.truncate(17 * 1024 * 1024)
    proc = run("--file", str(path), "--json")
    assert proc.returncode == 1
    assert "exceeds" in proc.stderr
    assert "exceeds" in json.loads(proc.stdout)["quarantined"][0]["reason"]


def test_undecodable_binary_is_not_dumped(tmp_path: Path) -> None:
    path = tmp_path / "bad.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00" + bytes(range(256)))
    proc = run("--file", str(path))
    assert proc.returncode == 1
    assert "binary data" in proc.stdout and "\x07" not in proc.stdout


@pytest.mark.parametrize(
    ("make", "encoding"),
    [
        (lambda b: b"\x00\x53\x77\xb1" + len(b).to_bytes(4, "big") + b, ["amqp-1.0"]),
        (lambda b: b"\xef\xbb\xbf" + b, ["bom"]),
        (lambda b: gzip.compress(b"[" + b + b"," + b + b"]"), ["gzip"]),
    ],
)
def test_file_framings(tmp_path: Path, make: object, encoding: list[str]) -> None:
    path = tmp_path / "capture.bin"
    path.write_bytes(make(load_sample("work_started")))  # type: ignore[operator]
    proc = run("--file", str(path), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["encoding"] == encoding
    assert {m["message_name"] for m in report["messages"]} == {"CFX.Production.WorkStarted"}


def test_ascii_only_stdout_gets_valid_output() -> None:
    # the FCT report text carries a non-ASCII ellipsis
    proc = run("--convert", "units_tested_fct", "--json", encoding="ascii")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["messages"]
    proc = run("--sample", "units_tested_fct", encoding="ascii")
    assert proc.returncode == 0, proc.stderr


def test_without_a_preview_plugin_the_explorer_says_so() -> None:
    report = build_report(load_sample("work_completed_pass"), label="sample work_completed_pass", previews={})
    assert report.previews == () and len(report.events) == 2
    text = " ".join(render_report(report, show_raw=False).split())  # as one line, whatever the width
    assert "production.work_completed" in text
    assert "not shown, no preview plugin is installed (entry point group pywats_events.previews)" in text
    data = report_to_json(report)
    assert list(data) == ["input", "bytes", "encoding", "messages", "quarantined"]


_PLUGIN_MODULE = """
from pywats_events.previews import Preview, PreviewOutcome, PreviewRequest

def mes_preview():
    def run(events):
        return [
            PreviewOutcome(
                handlers=("mes-tracker",),
                requests=(PreviewRequest("POST", "/track", f"track {e.payload['unit_serial']}", {"n": i}),),
            )
            for i, e in enumerate(events)
        ]
    return Preview(target="MES", run=run, note="an MES that knows every unit")

def not_a_preview():
    return {"target": "MES"}
"""


def install_preview_plugins(site: Path) -> dict[str, str]:
    """A distribution on the path with three previews: a working one, a missing module, a wrong factory."""
    (site / "mes_preview.py").write_text(_PLUGIN_MODULE)
    info = site / "mes_preview-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mes-preview\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[pywats_events.previews]\n"
        "mes = mes_preview:mes_preview\n"
        "gone = no_such_module_for_previews:preview\n"
        "odd = mes_preview:not_a_preview\n"
    )
    return {"PYTHONPATH": str(site)}


def test_every_installed_preview_plugin_is_shown_and_a_broken_one_is_named(tmp_path: Path) -> None:
    env = install_preview_plugins(tmp_path)
    proc = run("--convert", "work_completed_pass", "--json", env=env)
    assert proc.returncode == 0, proc.stderr  # a preview failure is no decoding failure
    report = json.loads(proc.stdout)
    assert report["mes"] == [
        {"n": 0, "placeholders": []},
        {"n": 1, "placeholders": []},
    ]
    assert [e["handlers"] for e in report["mes_per_event"]] == [["mes-tracker"], ["mes-tracker"]]
    assert "ModuleNotFoundError" in report["gone_error"] and report["gone"] == []
    assert "not a Preview" in report["odd_error"]
    assert [e["payload"]["unit_serial"] for e in report["messages"][0]["events"]] == [
        "MB-4471-000145",
        "MB-4471-000146",
    ]

    text = run("--convert", "work_completed_pass", env=env).stdout
    section = text.split("what MES would receive", 1)[1]
    assert "track MB-4471-000145" in section and "an MES that knows every unit" in section
    assert "the gone preview failed: the plugin cannot be loaded: ModuleNotFoundError" in text
