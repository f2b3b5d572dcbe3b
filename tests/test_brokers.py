"""The skip-or-fail rule of the broker tests: run when reachable, skip when not, fail under CI=true."""

from __future__ import annotations

import socket

import pytest
from brokers import require_port


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_reachable_port_returns() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        require_port("127.0.0.1", server.getsockname()[1], "listener")


def test_unreachable_port_skips_with_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    port = _closed_port()
    with pytest.raises(pytest.skip.Exception, match=f"Thing not reachable at 127.0.0.1:{port}"):
        require_port("127.0.0.1", port, "Thing")


@pytest.mark.parametrize("value", ["true", "TRUE"])
def test_unreachable_port_fails_under_ci(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        require_port("127.0.0.1", _closed_port(), "Thing")
