"""Our WSJF documents parse with the vendor's own `UUTReport` (PyPI `pywats-api`) without losing fields.

`pywats-api` ships top-level packages named like ours, so it is installed into a throwaway venv (cached
under the pytest cache directory) and the documents are checked by a script running there."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from brokers import skip_or_fail
from handler_helpers import T0, make_result

from handlers import preview_requests
from handlers.wats.wsjf import ReportHeader, build_uut_report
from pywats_events.payloads import Defect, Measurement, MeasurementKind, StepResult, Symptom, TestStep

# the first run installs pywats-api into the throwaway venv (~15-30 s); later runs reuse the cached venv
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

SCRIPT = Path(__file__).parent / "vendor" / "validate_wsjf.py"


def _python(env_dir: Path) -> Path:
    return env_dir / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def _has_pywats(python: Path) -> bool:
    if not python.exists():
        return False
    probe = "from pywats.domains.report.report_models import UUTReport"
    return subprocess.run([str(python), "-c", probe], capture_output=True, timeout=120).returncode == 0


@pytest.fixture(scope="module")
def vendor_python(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = getattr(request.config, "cache", None)
    base = cache.mkdir("pywats_api_venv") if cache is not None else tmp_path_factory.mktemp("pywats_api_venv")
    env_dir = Path(base) / "venv"
    python = _python(env_dir)
    if _has_pywats(python):
        return python
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "pywats-api"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if install.returncode != 0 or not _has_pywats(python):
        reason = f"cannot install pywats-api into a throwaway venv: {install.stderr.strip()[-500:]}"
        skip_or_fail(reason)
    return python


def _validate(python: Path, documents: list[dict[str, Any]], tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "documents.json"
    path.write_text(json.dumps(documents), encoding="utf-8")
    done = subprocess.run([str(python), str(SCRIPT), str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    results: list[dict[str, Any]] = json.loads(done.stdout)
    assert len(results) == len(documents)
    return results


def _every_step_kind() -> dict[str, Any]:
    tests = [
        TestStep(
            name="Rails",
            result=StepResult.PASSED,
            start=T0,
            end=T0 + timedelta(seconds=1),
            measurements=[
                Measurement(name="5V", value=5.0, units="V", low_limit=4.9, high_limit=5.1),
                Measurement(name="12V", value=12.0, low_limit=11.5),
                Measurement(name="Leak", value=0.1, high_limit=1.0),
                Measurement(name="Ref", value=2.5, expected_value=2.5),
                Measurement(name="Log", value=float("nan"), result=StepResult.ERROR),
            ],
        ),
        TestStep(
            name="Single", measurements=[Measurement(name="x", value=1.0, low_limit=0.0, high_limit=2.0)]
        ),
        TestStep(
            name="Flags",
            measurements=[
                Measurement(name="a", kind=MeasurementKind.BOOLEAN, value=True),
                Measurement(name="b", kind=MeasurementKind.BOOLEAN, value=False, expected_value=True),
            ],
        ),
        TestStep(name="Flag", measurements=[Measurement(name="a", kind=MeasurementKind.BOOLEAN, value=True)]),
        TestStep(
            name="FW",
            measurements=[
                Measurement(name="fw", kind=MeasurementKind.TEXT, value="1.2", expected_value="1.2")
            ],
        ),
        TestStep(
            name="Strings",
            measurements=[
                Measurement(name="s1", kind=MeasurementKind.TEXT, value="a"),
                Measurement(name="s2", kind=MeasurementKind.OTHER, value=7.5),
            ],
        ),
        TestStep(
            name="Mixed",
            measurements=[
                Measurement(name="v", value=1.0),
                Measurement(name="ok", kind=MeasurementKind.BOOLEAN, value=True),
                Measurement(name="t", kind=MeasurementKind.TEXT, value="t"),
            ],
        ),
        TestStep(
            name="Visual",
            result=StepResult.FAILED,
            defects=[Defect(code="BRIDGE", component="U1")],
            error="probe",
            comments="checked",
        ),
        TestStep(name="Skipped", result=StepResult.SKIPPED),
        TestStep(name="Unknown"),
    ]
    header = ReportHeader(
        id="6f1c1b2e-0000-4000-8000-000000000001",
        part_number="PCBA-100",
        revision="A",
        process_code=10,
        machine_name="ICT-01",
        location="Line 3",
        timezone="Europe/Oslo",
    )
    event = make_result(tests=tests, symptoms=[Symptom(code="S1")], defects=[Defect(code="D1")])
    return build_uut_report(event, header)


def _sample_documents() -> list[dict[str, Any]]:
    samples = pytest.importorskip("pywats_cfx.samples")
    from sample_plant import sample_events

    docs = []
    for name in samples.list_samples():
        docs += [r.json for r in preview_requests(sample_events(name)) if r.operation == "submit_report"]
    return docs


def test_wsjf_documents_parse_with_the_vendor_model(vendor_python: Path, tmp_path: Path) -> None:
    documents = [_every_step_kind(), *_sample_documents()]
    assert len(documents) >= 8  # seven sample reports plus the all-kinds report
    results = _validate(vendor_python, documents, tmp_path)
    bad = [(doc["sn"], result) for doc, result in zip(documents, results, strict=True) if not result["ok"]]
    assert bad == []


def test_the_vendor_check_rejects_broken_documents(vendor_python: Path, tmp_path: Path) -> None:
    good = _every_step_kind()
    missing_pn = {k: v for k, v in good.items() if k != "pn"}
    renamed = json.loads(json.dumps(good).replace('"numericMeas"', '"numericMeasurements"', 1))
    bad_status = json.loads(json.dumps(good).replace('"status": "P"', '"status": "Passed"', 1))
    results = _validate(vendor_python, [missing_pn, renamed, bad_status], tmp_path)
    assert results[0]["error"] and "pn" in results[0]["error"]
    assert results[1]["lost"]  # a key the vendor model does not know is dropped, and we notice
    assert results[2]["changed"]  # "Passed" is not a WSJF status letter
