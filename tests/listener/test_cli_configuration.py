"""Which configuration and data directory a command uses, said out loud; `config check|show`; `--version`.

Run as processes in fresh directories, as an operator would during an incident."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from brokers import RABBITMQ_URL
from listener_support import free_port

from pywats_events.exit_codes import ExitCode

Cli = Callable[..., subprocess.CompletedProcess[str]]


def _sample_run(tmp_path: Path, cli: Cli) -> Path:
    """A data directory holding every store, from a demo run; returns a config file pointing there."""
    data = tmp_path / "plant-data"
    cfg = tmp_path / "listener.toml"
    cfg.write_text(f'[listener]\ndata_dir = "{data.as_posix()}"\n')
    res = cli("run", "--config", cfg, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    return cfg


@pytest.mark.parametrize(
    "command",
    [
        ("dlq", "list"),
        ("dlq", "show", "abc"),
        ("dlq", "purge", "--yes"),
        ("dlq", "replay"),
        ("quarantine", "list"),
        ("quarantine", "show", "1"),
        ("outbox", "list"),
        ("status",),
    ],
)
def test_store_commands_in_the_wrong_directory_fail_and_create_nothing(
    tmp_path: Path, cli: Cli, command: tuple[str, ...]
) -> None:
    res = cli(*command, cwd=tmp_path)
    assert res.returncode == ExitCode.CONFIG, res.stdout + res.stderr
    assert str(tmp_path / "pywats-data") in res.stderr  # where it looked
    assert "dead letters (0)" not in res.stdout
    assert list(tmp_path.iterdir()) == []


def test_config_comes_from_the_environment_and_every_command_names_it(tmp_path: Path, cli: Cli) -> None:
    cfg = _sample_run(tmp_path, cli)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for command in (("dlq", "list"), ("quarantine", "list"), ("status",), ("outbox", "list")):
        res = cli(*command, cwd=elsewhere, PYWATS_EVENTS_CONFIG=str(cfg))
        assert res.returncode == 0, res.stderr
        assert f"config: {cfg} (from PYWATS_EVENTS_CONFIG)" in res.stderr
        assert f"data directory: {tmp_path / 'plant-data'}" in res.stderr
    assert list(elsewhere.iterdir()) == []
    # --config wins over the environment
    other = tmp_path / "other.toml"
    other.write_text(f'[listener]\ndata_dir = "{(tmp_path / "nothing").as_posix()}"\n')
    res = cli("dlq", "list", "--config", other, cwd=elsewhere, PYWATS_EVENTS_CONFIG=str(cfg))
    assert res.returncode == ExitCode.CONFIG
    assert f"config: {other} (from --config)" in res.stderr


def test_a_missing_config_file_named_by_the_environment_is_an_error(tmp_path: Path, cli: Cli) -> None:
    res = cli("status", cwd=tmp_path, PYWATS_EVENTS_CONFIG=str(tmp_path / "nope.toml"))
    assert res.returncode == ExitCode.CONFIG
    assert "nope.toml" in res.stderr


def test_version(tmp_path: Path, cli: Cli) -> None:
    from importlib.metadata import version

    res = cli("--version", cwd=tmp_path)
    assert res.returncode == 0
    assert res.stdout.strip() == f"pywats-events {version('pywats-events')}"


def test_config_show_names_the_source_of_each_value_and_masks_secrets(tmp_path: Path, cli: Cli) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[listener]\nlog_level = "DEBUG"\n[amqp]\nurl = "amqp://plant:s3cr3t@broker.example:5672/"\n'
        '[wats]\ntoken = "tok-123456"\n'
    )
    res = cli(
        "config",
        "show",
        "--json",
        "--config",
        cfg,
        "--data-dir",
        tmp_path / "d",
        cwd=tmp_path,
        PYWATS_EVENTS_BUS_MAX_CONCURRENCY="7",
    )
    assert res.returncode == 0, res.stderr
    assert "s3cr3t" not in res.stdout + res.stderr and "tok-123456" not in res.stdout
    rows = {r["setting"]: r for r in map(json.loads, res.stdout.splitlines())}
    assert rows["listener.log_level"] == {"setting": "listener.log_level", "value": "DEBUG", "source": "file"}
    assert rows["bus.max_concurrency"]["value"] == 7
    assert rows["bus.max_concurrency"]["source"] == "environment"
    assert rows["listener.data_dir"]["source"] == "command line"
    assert rows["journal.retention"]["source"] == "default"
    assert "broker.example" in rows["amqp.url"]["value"]
    assert rows["wats.token"]["value"] == "********"
    assert list(tmp_path.iterdir()) == [cfg]  # showing creates nothing


def test_config_check_outcomes(tmp_path: Path, cli: Cli) -> None:
    closed = free_port()
    with socket.socket() as s:  # a port nobody listens on stays closed while the test runs
        s.bind(("127.0.0.1", closed))
        bad_broker = tmp_path / "bad.toml"
        bad_broker.write_text(f'[mqtt]\nurl = "mqtt://127.0.0.1:{closed}"\n')
        res = cli("config", "check", "--config", bad_broker, "--timeout", "2", cwd=tmp_path)
    assert res.returncode == ExitCode.ERROR, res.stdout + res.stderr
    assert f"mqtt.url: mqtt://127.0.0.1:{closed} unreachable" in res.stdout

    typo = tmp_path / "typo.toml"
    typo.write_text('[listener]\nhandlers = ["wats", "nosuchhandler"]\n')
    res = cli("config", "check", "--config", typo, cwd=tmp_path)
    assert res.returncode == ExitCode.CONFIG
    assert "nosuchhandler" in res.stderr

    good = tmp_path / "good.toml"
    good.write_text(f'[amqp]\nurl = "{RABBITMQ_URL}"\n')
    res = cli("config", "check", "--config", good, cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "ok    plugin transport amqp" in res.stdout
    assert "amqp.url: amqp://127.0.0.1:5672 reachable" in res.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml", "good.toml", "typo.toml"]
