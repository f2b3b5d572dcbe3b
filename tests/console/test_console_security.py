"""The console's guard rails without a browser: where it may listen, what stays as it was on the metrics
port, and that a console without a token changes nothing."""

from __future__ import annotations

import uuid
from pathlib import Path

from brokers import MQTT_HOST, MQTT_PORT, require_mosquitto
from console_support import CONSOLE_TOKEN, request
from listener.listener_support import ListenerProcess, clean_env, free_port, run_cli, wats_settings_toml
from prometheus_client import CONTENT_TYPE_LATEST


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_run_refuses_a_console_on_the_network_without_a_token(tmp_path: Path) -> None:
    cfg = tmp_path / "listener.toml"
    cfg.write_text('[listener]\nmetrics_host = "0.0.0.0"\n')
    args = ("run", "--config", cfg, "--metrics-port", str(free_port()), "--data-dir", tmp_path / "data")
    refused = run_cli(*args, cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr
    assert "listener.metrics_host: the console would listen on 0.0.0.0 without a token" in _flat(
        refused.stderr
    )
    # with a token it serves (the bundled samples run to their end), and the token is not logged
    served = run_cli(*args, cwd=tmp_path, env=clean_env(PYWATS_EVENTS_CONSOLE_TOKEN=CONSOLE_TOKEN))
    assert served.returncode == 0, served.stderr
    assert "console on http://0.0.0.0:" in served.stderr
    assert CONSOLE_TOKEN not in served.stdout + served.stderr


def _mqtt_listener(tmp_path: Path, extra: str = "") -> ListenerProcess:
    require_mosquitto()
    prefix = f"pywats-console-test/{uuid.uuid4().hex[:10]}"
    config = (
        f'[mqtt]\nurl = "mqtt://{MQTT_HOST}:{MQTT_PORT}"\ntopics = ["{prefix}/#"]\n'
        f'client_id = "console-test-{uuid.uuid4().hex[:8]}"\npersistent_session = false\n'
        + extra
        + wats_settings_toml()
    )
    return ListenerProcess(tmp_path, config).start()


def test_metrics_port_answers_as_before_and_a_console_without_token_is_read_only(tmp_path: Path) -> None:
    listener = _mqtt_listener(tmp_path)
    try:
        port = listener.port
        assert request(port, "/healthz") == (200, '{"status": "ok"}\n')
        status, body = request(port, "/readyz")
        assert status == 200 and '"mqtt": "connected"' in body
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            assert r.headers["Content-Type"] == CONTENT_TYPE_LATEST
            assert "pywats_messages_received" in r.read().decode()
        assert request(port, "/metrics", {})[0] == 405
        assert request(port, "/")[0] == 200
        status, body = request(port, "/api/actions/dead-letters/purge", {"all": True, "confirm": True})
        assert status == 403 and "read-only" in body
        bearer = {"Authorization": f"Bearer {CONSOLE_TOKEN}"}
        assert request(port, "/api/actions/quarantine/purge", {"all": True}, headers=bearer)[0] == 403
        # a name that resolves to this machine (DNS rebinding) does not read the console; health still answers
        assert request(port, "/api/overview", headers={"Host": f"rebound.example:{port}"})[0] == 421
        assert request(port, "/healthz", headers={"Host": f"rebound.example:{port}"})[0] == 200
        assert request(port, "/api/overview", headers={"Host": f"localhost:{port}"})[0] == 200
    finally:
        listener.stop()
    assert "console action refused (the console is read-only" in listener.log.read_text()


def test_console_off_leaves_only_health_and_metrics(tmp_path: Path) -> None:
    listener = _mqtt_listener(tmp_path, "[console]\nenabled = false\n")
    try:
        port = listener.port
        assert request(port, "/healthz")[0] == 200
        assert request(port, "/metrics")[0] == 200
        assert request(port, "/")[0] == 404
        assert request(port, "/api/overview")[0] == 404
    finally:
        listener.stop()
