"""`pywats-events plugins`: the installed plugins with what they declare, and a broken one listed, harmless
until the configuration uses it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

GOOD = """
from pydantic import BaseModel
from pywats_events import EventType, handler

class Options(BaseModel):
    limit: int = 3

def factory(ctx):
    ctx.parse_options(Options)

    @handler(EventType.TEST_RESULT, name="good")
    def good(event):
        return None

    return [good]

factory.event_types = [EventType.TEST_RESULT]
factory.options_model = Options
"""


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A directory on PYTHONPATH holding an installed distribution with a good and two broken plugins."""
    site = tmp_path / "site"
    dist = site / "kit_probe-1.2.3.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: kit-probe\nVersion: 1.2.3\n")
    (dist / "entry_points.txt").write_text(
        "[pywats_events.handlers]\n"
        "good = kit_probe_good:factory\n"
        "broken = kit_probe_broken:factory\n"
        "[pywats_events.settings]\n"
        "brokensec = kit_probe_broken:SECTION\n"
    )
    (site / "kit_probe_good.py").write_text(GOOD)
    (site / "kit_probe_broken.py").write_text("import no_such_module_anywhere\n")
    return site


def cli(*args: str, site: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYWATS_EVENTS_", "WATS_"))}
    env["PYTHONPATH"] = str(site)
    env["COLUMNS"] = "250"
    return subprocess.run(
        [sys.executable, "-m", "pywats_events.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_plugins_lists_distribution_event_types_options_and_the_reason_of_a_broken_one(
    site: Path, tmp_path: Path
) -> None:
    proc = cli("plugins", "--json", site=site, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = {(r["group"], r["name"]): r for r in map(json.loads, proc.stdout.splitlines())}
    good = rows[("handlers", "good")]
    assert (good["distribution"], good["version"]) == ("kit-probe", "1.2.3")
    assert good["event_types"] == ["test.result"] and good["options_model"] == "kit_probe_good.Options"
    assert good["error"] == ""
    for key in (("handlers", "broken"), ("settings", "brokensec")):
        assert "ModuleNotFoundError" in rows[key]["error"] and "no_such_module_anywhere" in rows[key]["error"]
    assert rows[("handlers", "wats")]["options_model"] == "handlers.config.WatsHandlersConfig"
    assert "test.result" in rows[("handlers", "wats")]["event_types"]
    assert {("transports", "amqp"), ("codecs", "cfx"), ("commands", "outbox")} <= set(rows)
    assert rows[("broker_dead_letters", "amqp")]["error"] == ""
    table = cli("plugins", site=site, cwd=tmp_path)
    assert table.returncode == 0 and "cannot be imported" in table.stdout


def test_a_broken_plugin_stops_only_a_start_that_uses_it(site: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert cli("config", "show", "--data-dir", str(data), site=site, cwd=tmp_path).returncode == 0
    (tmp_path / "sec.toml").write_text("[brokensec]\nx = 1\n")
    proc = cli("config", "show", "--config", "sec.toml", "--data-dir", str(data), site=site, cwd=tmp_path)
    assert proc.returncode == 2
    assert "brokensec" in proc.stderr and "no_such_module_anywhere" in proc.stderr
    (tmp_path / "run.toml").write_text('[listener]\nhandlers = ["broken"]\n')
    proc = cli("run", "--config", "run.toml", "--data-dir", str(data), site=site, cwd=tmp_path)
    assert proc.returncode == 2
    assert "listener.handlers" in proc.stderr and "'broken'" in proc.stderr
    assert "no_such_module_anywhere" in proc.stderr
