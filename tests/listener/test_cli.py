"""The `pywats-events` command as users run it: a real subprocess in a fresh directory."""

from __future__ import annotations

import base64
import gzip
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

from pywats_events.exit_codes import ExitCode

Cli = Callable[..., subprocess.CompletedProcess[str]]


def test_run_without_arguments_replays_samples_into_outbox(tmp_path: Path, cli: Cli) -> None:
    res = cli("run", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "run summary" in res.stdout
    assert "messages received" in res.stdout and "15" in res.stdout
    assert "POST /api/Report/WSJF" in res.stdout
    assert "outbox: pywats-data" in res.stdout
    assert (tmp_path / "pywats-data" / "outbox" / "outbox.db").exists()

    listed = cli("outbox", "list", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert rows, "the outbox holds the WATS requests"
    assert all(set(r) == {"method", "path", "params", "json"} for r in rows)
    reports = [r for r in rows if r["path"] == "/api/Report/WSJF"]
    assert reports and all(r["method"] == "POST" and r["json"]["id"] for r in reports)

    status = cli("status", "--json", cwd=tmp_path)
    data = json.loads(status.stdout)
    assert data["listener"] == "stopped"
    assert data["journal_depth"] == 0
    assert data["dlq_size"] == 0


def test_second_run_does_not_duplicate_reports(tmp_path: Path, cli: Cli) -> None:
    assert cli("run", cwd=tmp_path).returncode == 0
    first = cli("outbox", "list", "--json", cwd=tmp_path).stdout.splitlines()
    assert cli("run", cwd=tmp_path).returncode == 0
    second = cli("outbox", "list", "--json", cwd=tmp_path).stdout.splitlines()
    ids = [json.loads(x)["json"]["id"] for x in second if "/api/Report/WSJF" in x]
    before = [x for x in first if "/api/Report/WSJF" in x]
    # a replayed message overwrites its report (same deterministic id) instead of adding one
    assert len(ids) == len(set(ids)) == len(before)


def test_invalid_setting_from_environment_fails_with_exit_2(tmp_path: Path, cli: Cli) -> None:
    res = cli("run", cwd=tmp_path, PYWATS_EVENTS_LISTENER_MAX_MESSAGES="-3")
    assert res.returncode == 2
    assert "listener.max_messages" in res.stderr


def test_unknown_setting_in_toml_is_named(tmp_path: Path, cli: Cli) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[amqp]\nurl = "amqp://guest:guest@localhost/"\nprefech = 3\n')
    res = cli("run", "--config", cfg, cwd=tmp_path)
    assert res.returncode == 2
    assert "amqp.prefech" in res.stderr
    assert "guest:guest" not in res.stderr + res.stdout


def test_bad_plugin_name_is_a_config_error(tmp_path: Path, cli: Cli) -> None:
    res = cli("run", cwd=tmp_path, PYWATS_EVENTS_LISTENER_CODEC="nosuchcodec")
    assert res.returncode == 2
    assert "listener.codec" in res.stderr and "nosuchcodec" in res.stderr


def test_replay_jsonl_quarantines_bad_lines_and_keeps_going(tmp_path: Path, cli: Cli) -> None:
    from pywats_cfx.samples import load_sample

    good = load_sample("units_tested_ict")
    lines = [
        json.dumps(
            {"body_b64": base64.b64encode(gzip.compress(good)).decode(), "headers": {}, "topic": None}
        ),
        "{not json",
        json.dumps({"body_b64": base64.b64encode(b"\xff\xfe\x00garbage").decode()}),
        json.dumps(json.loads(good)),
    ]
    capture = tmp_path / "capture.jsonl"
    capture.write_text("\n".join(lines) + "\n")
    res = cli("run", "--replay", capture, "--log-json", cwd=tmp_path)
    # no part number rules: the good messages' test results are dead-lettered (exit code 3, not 0)
    assert res.returncode == ExitCode.DEAD_LETTERS, res.stderr
    assert "messages received" in res.stdout
    q = cli("quarantine", "list", "--json", cwd=tmp_path)
    items = [json.loads(x) for x in q.stdout.splitlines()]
    assert len(items) == 2
    shown = cli("quarantine", "show", str(items[0]["id"]), "--raw", tmp_path / "raw.bin", cwd=tmp_path)
    assert shown.returncode == 0
    assert (tmp_path / "raw.bin").read_bytes() == b"{not json"
    # JSON logs: every stderr line is a JSON object
    for line in res.stderr.splitlines():
        assert isinstance(json.loads(line), dict)


def test_dlq_list_filter_replay_and_purge(tmp_path: Path, cli: Cli) -> None:
    cfg = tmp_path / "c.toml"
    # no product rules: test reports cannot be resolved and are dead-lettered
    cfg.write_text('[handlers.wats]\nlocation = "L"\nenable_assets = false\n')
    res = cli("run", "--config", cfg, cwd=tmp_path)
    assert res.returncode == ExitCode.DEAD_LETTERS, res.stderr
    listed = cli("dlq", "list", "--json", "--config", cfg, cwd=tmp_path)
    entries = [json.loads(x) for x in listed.stdout.splitlines()]
    assert entries and all(e["error_type"] for e in entries)
    only = cli("dlq", "list", "--json", "--event-type", "test.result", cwd=tmp_path)
    assert {json.loads(x)["event_type"] for x in only.stdout.splitlines()} == {"test.result"}
    shown = cli("dlq", "show", entries[0]["id"], cwd=tmp_path)
    assert json.loads(shown.stdout)["event"]["metadata"]["event_id"] == entries[0]["event_id"]

    # fixed configuration: replay succeeds and empties the DLQ for those entries
    fixed = tmp_path / "fixed.toml"
    fixed.write_text(
        '[handlers.wats]\nlocation = "L"\nenable_assets = false\ndefault_part_number = "P"\n'
        'default_revision = "A"\ndefault_process_code = 10\n'
    )
    replayed = cli("dlq", "replay", "--config", fixed, "--event-type", "test.result", cwd=tmp_path)
    assert replayed.returncode == 0, replayed.stderr
    left = cli("dlq", "list", "--json", "--event-type", "test.result", cwd=tmp_path)
    assert left.stdout.strip() == ""

    purged = cli("dlq", "purge", "--yes", cwd=tmp_path)
    assert purged.returncode == 0
    assert cli("dlq", "list", "--json", cwd=tmp_path).stdout.strip() == ""


def _capture(tmp_path: Path, n: int) -> Path:
    from pywats_cfx.samples import list_samples, load_sample

    names = list_samples()
    path = tmp_path / "cap.jsonl"
    path.write_text(
        "\n".join(json.dumps(json.loads(load_sample(names[i % len(names)]))) for i in range(n)) + "\n"
    )
    return path


def test_sigterm_drains_and_status_sees_the_running_listener(tmp_path: Path, cli: Cli) -> None:
    import signal
    import time
    import urllib.request

    from listener_support import clean_env, cli_path, free_port

    port = free_port()
    proc = subprocess.Popen(
        [
            cli_path(),
            "run",
            "--replay",
            str(_capture(tmp_path, 200)),
            "--rate",
            "20",
            "--metrics-port",
            str(port),
        ],
        cwd=tmp_path,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "listener never became ready"
            time.sleep(0.2)
        time.sleep(2.5)  # a status snapshot is written every 2 s
        status = json.loads(cli("status", "--json", cwd=tmp_path).stdout)
        assert status["listener"] == "running" and status["pid"] == proc.pid
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped: SIGTERM" in out
    received = int(next(line for line in out.splitlines() if "messages received" in line).split()[-2])
    assert 0 < received < 200
    assert json.loads(cli("status", "--json", cwd=tmp_path).stdout)["listener"] == "stopped"


def test_max_messages_stops_the_run(tmp_path: Path, cli: Cli) -> None:
    res = cli(
        "run", "--replay", _capture(tmp_path, 100), "--rate", "50", "--max-messages", "10", cwd=tmp_path
    )
    assert res.returncode == ExitCode.DEAD_LETTERS, res.stderr  # no part number rules configured
    assert "stopped: max-messages 10" in res.stdout


def test_dlq_ids_are_usable_from_a_pipe_and_replay_stops_during_an_outage(tmp_path: Path, cli: Cli) -> None:
    from listener_support import free_port

    cfg = tmp_path / "c.toml"
    cfg.write_text('[handlers.wats]\nlocation = "L"\nenable_assets = false\n')
    assert cli("run", "--config", cfg, cwd=tmp_path).returncode == ExitCode.DEAD_LETTERS
    ids = [json.loads(x)["id"] for x in cli("dlq", "list", "--json", cwd=tmp_path).stdout.splitlines()]
    assert len(ids) >= 2
    listed = cli("dlq", "list", cwd=tmp_path)  # not a terminal: 80 columns
    assert all(i in listed.stdout for i in ids), listed.stdout

    # a unique prefix works like the full id; an unknown one exits 1 and says so
    shown = cli("dlq", "show", ids[0][:10], cwd=tmp_path)
    assert shown.returncode == 0 and json.loads(shown.stdout)["id"] == ids[0]
    missing = cli("dlq", "show", "zzzz", cwd=tmp_path)
    assert missing.returncode == 1 and "zzzz" in missing.stderr

    # WATS unreachable: the replay gives up after drain_timeout instead of hanging; nothing leaves the DLQ
    stuck = cli(
        "dlq",
        "replay",
        ids[0][:10],
        "--wats-url",
        f"http://127.0.0.1:{free_port()}",
        cwd=tmp_path,
        WATS_AUTH_TOKEN="tok-for-test",
        PYWATS_EVENTS_LISTENER_DRAIN_TIMEOUT="1",
    )
    assert stuck.returncode == 1, stuck.stdout + stuck.stderr
    assert "stay in the DLQ" in stuck.stderr
    assert len(cli("dlq", "list", "--json", cwd=tmp_path).stdout.splitlines()) == len(ids)

    # ids as arguments (as README shows), replayed with a fixed configuration into the outbox
    fixed = tmp_path / "fixed.toml"
    fixed.write_text(
        '[handlers.wats]\nlocation = "L"\nenable_assets = false\ndefault_part_number = "P"\n'
        'default_revision = "A"\ndefault_process_code = 10\n'
    )
    replayed = cli("dlq", "replay", "--config", fixed, ids[0], ids[1][:12], cwd=tmp_path)
    assert replayed.returncode == 0, replayed.stderr
    assert "replayed 2 dead letters" in replayed.stdout
    left = {json.loads(x)["id"] for x in cli("dlq", "list", "--json", cwd=tmp_path).stdout.splitlines()}
    assert ids[0] not in left and ids[1] not in left


def test_resumed_journal_entries_are_not_counted_as_unfinished_after_the_run(
    tmp_path: Path, cli: Cli
) -> None:
    import asyncio

    from pywats_events import Event, EventType
    from pywats_events.journal import SqliteJournal

    async def leave_pending() -> None:
        async with SqliteJournal(tmp_path / "pywats-data" / "journal.db") as journal:
            events = [
                Event(event_type=EventType.PASSTHROUGH, payload={"n": n}, source="left-over")
                for n in range(4)
            ]
            await journal.append(events)

    (tmp_path / "pywats-data").mkdir()
    asyncio.run(leave_pending())
    res = cli("run", cwd=tmp_path)  # resumes the four, then replays the samples
    assert res.returncode == 0, res.stderr
    depth = next(line for line in res.stdout.splitlines() if "journal depth" in line)
    assert depth.split()[-2] == "0", res.stdout
    assert json.loads(cli("status", "--json", cwd=tmp_path).stdout)["journal_depth"] == 0
