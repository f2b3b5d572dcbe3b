"""End to end, as docs/operations.md describes it: the line simulator → real RabbitMQ → `pywats-events run
--amqp` with the sample configuration and both sample plugins installed (pip, into a directory on the
listener's path) → FakeWATS; plus the CSV archive and the FPY watch's asset log message."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from brokers import RABBITMQ_URL
from listener_support import ListenerProcess, clean_env, wait_until

from handlers.wats.fake import FakeWATS

pytestmark = [pytest.mark.broker]

ROOT = Path(__file__).resolve().parents[2]
TOKEN = FakeWATS.make_token("line", "s3cret-pw")
STATIONS = ("Acme.ICT.SN1000", "Acme.ICT.SN1001")
UNITS = 30


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both sample plugins, installed by pip into a directory of their own (the venv stays as it is)."""
    site = tmp_path_factory.mktemp("site")
    plugins = [str(ROOT / "samples" / "plugin"), str(ROOT / "samples" / "fpy_watch")]
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), *plugins],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    return site


@pytest.fixture
def wats() -> Iterator[FakeWATS]:
    with FakeWATS(token=TOKEN) as fake:
        yield fake


@pytest.mark.timeout(240)
def test_simulated_line_reaches_wats_the_csv_archive_and_the_fpy_watch(
    tmp_path: Path, plugin_site: Path, wats: FakeWATS, topology: tuple[str, str, str]
) -> None:
    exchange, queue, dlx = topology
    asset_ids = {handle: wats.add_asset(handle.rsplit(".", 1)[-1])["assetId"] for handle in STATIONS}
    env = clean_env(
        PYTHONPATH=str(plugin_site),
        WATS_AUTH_TOKEN=TOKEN,
        PYWATS_EVENTS_LISTENER_DATA_DIR=str(tmp_path / "data"),
        PYWATS_EVENTS_LISTENER_HANDLERS="wats,csv_archive,fpy_watch",
        PYWATS_EVENTS_PLUGINS__AMQP__DEAD_LETTER_EXCHANGE=dlx,
        PYWATS_EVENTS_HANDLERS__FPY_WATCH__THRESHOLD="0.9",
        PYWATS_EVENTS_HANDLERS__FPY_WATCH__WINDOW="10",
        PYWATS_EVENTS_HANDLERS__FPY_WATCH__MIN_UNITS="5",
        PYWATS_EVENTS_HANDLERS__FPY_WATCH__ASSET_IDS=json.dumps(asset_ids),
    )
    # installed, they are listed with their distributions and event types
    listed = subprocess.run(
        [sys.executable, "-m", "pywats_events.cli", "plugins", "--json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr[-3000:]
    rows = {(r["group"], r["name"]): r for r in map(json.loads, listed.stdout.splitlines())}
    assert {("handlers", "csv_archive"), ("handlers", "fpy_watch")} <= set(rows), sorted(rows)
    config = (ROOT / "samples" / "config" / "line-simulator.toml").read_text()
    listener = ListenerProcess(
        tmp_path,
        config,
        *("--amqp", RABBITMQ_URL, "--exchange", exchange, "--queue", queue, "--wats-url", wats.url),
        env=env,
    ).start()
    try:
        line = ["--exchange", exchange, "--count", str(UNITS), "--rate", "0", "--stations", "2"]
        line += ["--fail-rate", "0.7", "--fault-rate", "0", "--seed", "11"]
        simulator = subprocess.run(
            [sys.executable, str(ROOT / "samples" / "line_simulator.py"), "--url", RABBITMQ_URL, *line],
            capture_output=True,
            text=True,
            timeout=120,
            env=clean_env(),
        )
        assert simulator.returncode == 0, simulator.stderr
        assert f"for {UNITS} units" in simulator.stdout

        reports = wats.wait_for_reports(UNITS, timeout=120)
        alarms = wats.wait_for_asset_log(2, contains="FPY", timeout=60)
        archive = tmp_path / "data" / "test-results.csv"
        wait_until(
            lambda: archive.exists() and len(archive.read_text().splitlines()) == UNITS + 1,
            timeout=60,
            what=f"{UNITS} rows in {archive}",
        )
    finally:
        code = listener.stop()
    assert code == 0, listener.log.read_text()[-3000:]

    assert len(reports) == UNITS
    assert {r["sn"] for r in reports.values()} == {row["unit"] for row in _rows(archive)}
    assert {r["pn"] for r in reports.values()} == {"PCB-4711"}  # from the sample configuration
    failed = [r for r in reports.values() if r["result"] == "F"]
    assert failed and len(failed) < UNITS
    by_unit = {row["unit"]: row["result"] for row in _rows(archive)}
    assert all(by_unit[r["sn"]] == "Failed" for r in failed)
    # one alarm per station, on that station's asset: it re-arms only when the yield recovers (9 of the
    # last 10 passing, which a 70 % fail rate all but never gives)
    assert sorted(entry["assetId"] for entry in alarms) == sorted(asset_ids.values())
    assert all("threshold 90%" in entry["comment"] for entry in alarms)
    assert len(wats.wait_for_asset_log(contains="FPY")) == 2


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))
