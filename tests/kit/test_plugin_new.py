"""`pywats-events plugin new`: what it writes installs and passes its own tests as generated."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def run(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYWATS_EVENTS_", "WATS_"))}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_a_new_plugin_installs_is_listed_and_passes_its_tests(tmp_path: Path) -> None:
    py = sys.executable
    made = run(py, "-m", "pywats_events.cli", "plugin", "new", "demo", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert {p.name for p in (tmp_path / "demo").iterdir()} >= {"pyproject.toml", "pywats_demo", "tests"}
    again = run(py, "-m", "pywats_events.cli", "plugin", "new", "demo", cwd=tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr
    installed = run(py, "-m", "pip", "install", "-q", "--no-deps", "./demo", cwd=tmp_path)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    try:
        listed = run(py, "-m", "pywats_events.cli", "plugins", "--json", cwd=tmp_path)
        assert '"name": "demo"' in listed.stdout and "pywats-events-demo" in listed.stdout
        tested = run(py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "demo", cwd=tmp_path)
        assert tested.returncode == 0, tested.stdout + tested.stderr
        assert "2 passed" in tested.stdout
    finally:
        run(py, "-m", "pip", "uninstall", "-q", "-y", "pywats-events-demo", cwd=tmp_path)


def test_a_bad_name_is_refused(tmp_path: Path) -> None:
    proc = run(sys.executable, "-m", "pywats_events.cli", "plugin", "new", "Bad-Name", cwd=tmp_path)
    assert proc.returncode == 2 and "not a plugin name" in proc.stderr
    assert not any(tmp_path.iterdir())
