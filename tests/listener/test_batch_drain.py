"""Batch runs deliver everything they took in, and the summary and the exit code tell the truth.

The real `pywats-events run` process replays generated line traffic (WorkStarted → UnitsTested →
WorkCompleted per unit, plus station faults and state changes) through the WATS handlers into the outbox or
FakeWATS over HTTP.
"""

from __future__ import annotations

import importlib.util
import json
import re
import signal
import sqlite3
import sys
import uuid
from collections import Counter
from pathlib import Path
from types import ModuleType

from listener_support import Cli, ListenerProcess, free_port, wait_until

from handlers.wats.fake import FakeWATS
from pywats_events.exit_codes import ExitCode

ROOT = Path(__file__).resolve().parents[2]
TOKEN = FakeWATS.make_token("batch", "s3cret-pw")
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ +[A-Z]+ ")
STATIONS = [f"Acme.ICT.SN{1000 + i}" for i in range(3)]


def _simulator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("line_simulator", ROOT / "samples" / "line_simulator.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("line_simulator", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _traffic(path: Path, units: int, seed: int = 7) -> Counter[str]:
    """`units` simulated units as a JSON-lines capture; returns how many messages of each name it holds."""
    sim_mod = _simulator()
    sim = sim_mod.LineSimulator([sim_mod.Station(handle=h) for h in STATIONS], seed=seed, fault_rate=0.05)
    names: Counter[str] = Counter()
    with path.open("w", encoding="utf-8") as fh:
        for envelope in (*sim.announcements(), *(e for _ in range(units) for e in sim.unit())):
            names[envelope["MessageName"]] += 1
            fh.write(json.dumps(envelope) + "\n")
    return names


def _config(tmp_path: Path, *extra: str) -> Path:
    cfg = tmp_path / "c.toml"
    lines = [
        "[handlers.wats]",
        'location = "Test line"',
        'default_part_number = "MB-4471"',
        'default_revision = "C"',
        "default_process_code = 10",
        "lookup_part_number = false",
        "lookup_processes = false",
        *extra,
        "[wats]",
        "rate_limit_per_minute = 600000",  # FakeWATS takes what it gets; 500/min is for a real server
    ]
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


def _journal_unfinished(tmp_path: Path) -> int:
    with sqlite3.connect(tmp_path / "pywats-data" / "journal.db") as conn:
        return int(conn.execute("SELECT COUNT(*) FROM entries WHERE completed IS NULL").fetchone()[0])


def test_a_replay_of_6000_messages_is_delivered_in_one_run(tmp_path: Path, cli: Cli) -> None:
    names = _traffic(tmp_path / "traffic.jsonl", 2000)
    assert sum(names.values()) >= 6000
    cfg = _config(
        tmp_path,
        "[handlers.wats.assets]",
        *(f'"{h}" = "ICT-{i:02d}"' for i, h in enumerate(STATIONS)),
        "[handlers.wats.asset_ids]",  # offline: the outbox cannot ask WATS for them
        *(f'"ICT-{i:02d}" = "{uuid.uuid5(uuid.NAMESPACE_DNS, h)}"' for i, h in enumerate(STATIONS)),
    )

    res = cli("run", "--config", cfg, "--replay", tmp_path / "traffic.jsonl", cwd=tmp_path, timeout=240)

    assert res.returncode == ExitCode.OK, res.stdout[-3000:] + res.stderr[-3000:]
    assert "drained: True" in res.stdout
    assert "not drained" not in res.stdout
    assert _journal_unfinished(tmp_path) == 0
    listed = cli("outbox", "list", "--json", "--config", cfg, cwd=tmp_path, timeout=120)
    requests = [json.loads(line) for line in listed.stdout.splitlines()]
    reports = [r for r in requests if r["path"] == "/api/Report/WSJF"]
    assert len({r["json"]["id"] for r in reports}) == names["CFX.Production.TestAndInspection.UnitsTested"]
    status = json.loads(cli("status", "--json", cwd=tmp_path).stdout)
    assert status["journal_depth"] == 0 and status["dlq_size"] == 0


def test_wats_down_run_is_not_drained_and_the_next_start_delivers_everything(
    tmp_path: Path, cli: Cli
) -> None:
    names = _traffic(tmp_path / "traffic.jsonl", 150)
    units = names["CFX.Production.TestAndInspection.UnitsTested"]
    cfg = _config(tmp_path, "enable_assets = false")
    down = f"http://127.0.0.1:{free_port()}"

    res = cli(
        "run", "--config", cfg, "--replay", tmp_path / "traffic.jsonl", "--wats-url", down,
        "--drain-timeout", "2", cwd=tmp_path, timeout=120, WATS_AUTH_TOKEN=TOKEN,
    )  # fmt: skip

    assert res.returncode == ExitCode.NOT_DRAINED, res.stdout[-3000:] + res.stderr[-3000:]
    left = _journal_unfinished(tmp_path)
    assert left > 0
    assert "drained: False" in res.stdout
    assert f"not drained: {left} event(s) unfinished in the journal" in res.stdout
    assert "ReportHandler:" in res.stdout and "the next start resumes them" in res.stdout
    assert f"not drained: {left} event(s)" in res.stderr.strip().splitlines()[-1]

    (tmp_path / "empty.jsonl").write_text("")
    with FakeWATS(token=TOKEN) as wats:
        again = cli(
            "run", "--config", cfg, "--replay", tmp_path / "empty.jsonl", "--wats-url", wats.url,
            cwd=tmp_path, timeout=120, WATS_AUTH_TOKEN=TOKEN,
        )  # fmt: skip
        assert again.returncode == ExitCode.OK, again.stdout[-3000:] + again.stderr[-3000:]
        assert "drained: True" in again.stdout
        assert len(wats.reports) == units
    assert _journal_unfinished(tmp_path) == 0


def test_dead_letters_in_a_batch_run_have_their_own_exit_code(tmp_path: Path, cli: Cli) -> None:
    # no part number rules and no default: the bundled test results cannot be resolved
    cfg = tmp_path / "c.toml"
    cfg.write_text('[handlers.wats]\nlocation = "L"\nenable_assets = false\n')
    res = cli("run", "--config", cfg, cwd=tmp_path)
    assert res.returncode == ExitCode.DEAD_LETTERS, res.stdout + res.stderr
    assert "drained: True" in res.stdout and "exit code 3 (dead letters)" in res.stdout


def test_sigterm_mid_stream_leaves_a_resumable_journal_and_counts_what_remains(
    tmp_path: Path, cli: Cli
) -> None:
    _traffic(tmp_path / "traffic.jsonl", 1500)
    cfg = _config(tmp_path, "enable_assets = false")
    down = f"http://127.0.0.1:{free_port()}"
    listener = ListenerProcess(
        tmp_path,
        cfg.read_text() + f'url = "{down}"\n' + "[listener]\ndrain_timeout = 2\n",
        "--replay", str(tmp_path / "traffic.jsonl"), "--rate", "400",
        env=cli.env(WATS_AUTH_TOKEN=TOKEN),
    )  # fmt: skip
    listener.start()
    wait_until(
        lambda: listener.metric("pywats_messages_received_total") >= 300, 60, 0.1, "300 messages taken in"
    )
    assert listener.stop(signal.SIGTERM) == ExitCode.OK
    # the process's output holds the summary table too; the last *log* line is the one that counts
    last = [line for line in listener.log.read_text().splitlines() if LOG_LINE.match(line)][-1]
    left = _journal_unfinished(tmp_path)
    assert left > 0
    assert f"stopped (SIGTERM): not drained: {left} event(s) unfinished in the journal" in last, last

    with sqlite3.connect(tmp_path / "pywats-data" / "journal.db") as conn:
        tested = conn.execute("SELECT COUNT(*) FROM entries WHERE event_type = 'test.result'").fetchone()[0]
    (tmp_path / "empty.jsonl").write_text("")
    with FakeWATS(token=TOKEN) as wats:
        again = cli(
            "run", "--config", cfg, "--replay", tmp_path / "empty.jsonl", "--wats-url", wats.url,
            cwd=tmp_path, timeout=120, WATS_AUTH_TOKEN=TOKEN,
        )  # fmt: skip
        assert again.returncode == ExitCode.OK, again.stdout[-3000:] + again.stderr[-3000:]
        assert len(wats.reports) == tested > 0
    assert _journal_unfinished(tmp_path) == 0
