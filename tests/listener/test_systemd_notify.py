"""`Type=notify`: the listener tells systemd it is ready once its broker connection is up, keeps the
watchdog fed and says when it stops, over a real unix datagram socket as systemd provides it."""

from __future__ import annotations

import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from listener_support import ListenerProcess, amqp_toml, clean_env, wats_settings_toml

from pywats_events.systemd import SystemdNotifier


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    with tempfile.TemporaryDirectory(prefix="sdn") as short:  # unix socket paths are limited to 108 bytes
        path = str(Path(short) / "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        try:
            yield sock, path
        finally:
            sock.close()


def _messages_until(sock: socket.socket, wanted: str, timeout: float) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            got.append(sock.recv(4096).decode())
        except TimeoutError:
            break
        if wanted in got[-1]:
            return got
    pytest.fail(f"no {wanted!r} within {timeout}s; got {got}")


def test_ready_after_connect_watchdog_and_stopping(
    tmp_path: Path, topology: tuple[str, str, str], notify_socket: tuple[socket.socket, str]
) -> None:
    sock, path = notify_socket
    exchange, queue, dlx = topology
    env = clean_env(NOTIFY_SOCKET=path, WATCHDOG_USEC="400000")
    listener = ListenerProcess(tmp_path, amqp_toml(exchange, queue, dlx) + wats_settings_toml(), env=env)
    listener.start()
    try:
        first = _messages_until(sock, "READY=1", 30)
        assert "READY=1\nSTATUS=running: 1 transport(s) connected" in first
        assert listener.http("/readyz")[0] == 200
        # keep-alives at half the interval: several within a few intervals
        pings = [m for m in _messages_until(sock, "WATCHDOG=1", 5) if m == "WATCHDOG=1"]
        pings += [m for m in _messages_until(sock, "WATCHDOG=1", 5) if m == "WATCHDOG=1"]
        assert len(pings) >= 2
    finally:
        assert listener.stop() == 0
    tail = _messages_until(sock, "STOPPING=1", 10)
    assert any(m.startswith("STOPPING=1\nSTATUS=stopping (SIGTERM)") for m in tail)


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = SystemdNotifier(environ={"WATCHDOG_USEC": "1000"})
    assert not notifier.enabled and notifier.watchdog_interval is None
    assert notifier.notify("READY=1") is False


def test_abstract_socket_and_watchdog_of_another_process(notify_socket: tuple[socket.socket, str]) -> None:
    name = f"pywats-test-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as abstract:
        abstract.bind(b"\0" + name.encode())
        notifier = SystemdNotifier(environ={"NOTIFY_SOCKET": f"@{name}", "WATCHDOG_USEC": "2000000"})
        assert notifier.watchdog_interval == 2.0
        notifier.ready("up")
        notifier.ready("up again")  # READY=1 is sent once
        abstract.settimeout(5)
        assert abstract.recv(4096) == b"READY=1\nSTATUS=up"
        notifier.keep_alive(100.0)
        assert abstract.recv(4096) == b"WATCHDOG=1"
    # systemd names the process the watchdog is meant for; a child that inherited the variables stays quiet
    _, path = notify_socket
    other = SystemdNotifier(environ={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"})
    assert other.watchdog_interval is None
