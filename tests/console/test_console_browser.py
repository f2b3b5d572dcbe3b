"""The operator console in headless Chromium, served by a real `pywats-events run` (or `console`) process
fed over real Mosquitto, delivering to FakeWATS over HTTP: what an operator sees and does.

Screenshots of every page land in ``<tmp_path>/screenshots`` for a reviewer."""

from __future__ import annotations

import json
import subprocess
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from brokers import MQTT_HOST, MQTT_PORT, require_mosquitto
from console_support import (
    CONSOLE_TOKEN,
    MQTT_PASSWORD,
    WATS_TOKEN,
    api,
    assert_no_secret,
    click,
    message,
    open_page,
    request,
    screenshot,
    sign_in,
    text_of,
    wait_for,
)
from listener.listener_support import (
    ListenerProcess,
    clean_env,
    cli_path,
    free_port,
    reported_message_ids,
    run_cli,
    units_tested,
    wats_settings_toml,
)

from handlers.wats.fake import FakeWATS

pytestmark = pytest.mark.timeout(240)

FAKE_WATS_TOKEN = FakeWATS.make_token("listener", WATS_TOKEN)


class Publisher:
    """Publishes UnitsTested messages to Mosquitto, `publish(n)` at a time or steadily in the background."""

    def __init__(self, prefix: str) -> None:
        from paho.mqtt import client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.prefix = prefix
        self.run_id = uuid.uuid4().hex[:8]
        self.seq = 0
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"console-pub-{self.run_id}")
        self.client.connect(MQTT_HOST, MQTT_PORT)
        self.client.loop_start()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def publish(self, n: int = 1) -> list[str]:
        ids = []
        for _ in range(n):
            self.seq += 1
            uid, body = units_tested(self.seq, f"UT-{self.run_id}-{self.seq:04d}", self.run_id)
            self.client.publish(f"{self.prefix}/line1/fct", body, qos=1).wait_for_publish(timeout=10)
            ids.append(uid)
        return ids

    def steadily(self) -> None:
        def loop() -> None:
            while not self._stop.wait(0.1):
                self.publish(2)

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def publisher() -> Iterator[Publisher]:
    require_mosquitto()
    pub = Publisher(f"pywats-console-test/{uuid.uuid4().hex[:10]}")
    yield pub
    pub.close()


@pytest.fixture
def wats() -> Iterator[FakeWATS]:
    with FakeWATS(token=FAKE_WATS_TOKEN) as fake:
        yield fake


def _mqtt_toml(prefix: str) -> str:
    return (
        "[mqtt]\n"
        f'url = "mqtt://console:{MQTT_PASSWORD}@{MQTT_HOST}:{MQTT_PORT}"\n'
        f'topics = ["{prefix}/#"]\n'
        f'client_id = "console-test-{uuid.uuid4().hex[:8]}"\n'
        "persistent_session = false\n"
    )


def _listener(tmp_path: Path, config: str, **env: str) -> ListenerProcess:
    environment = clean_env(PYWATS_EVENTS_CONSOLE_TOKEN=CONSOLE_TOKEN, **env)
    return ListenerProcess(tmp_path, config, env=environment)


def test_overview_is_live_every_page_renders_and_none_holds_a_credential(
    tmp_path: Path, browser: Any, publisher: Publisher
) -> None:
    """Outbox mode (no WATS server): the WATS token is still configured, as are an MQTT password and the
    console token; they must not appear in any page or response."""
    config = _mqtt_toml(publisher.prefix) + "[listener]\ndrain_timeout = 10\n" + wats_settings_toml()
    listener = _listener(tmp_path, config, PYWATS_EVENTS_WATS_TOKEN=WATS_TOKEN).start()
    try:
        port = listener.port
        open_page(browser, port, "/")
        browser.execute_script("window.notReloaded = true")
        publisher.steadily()
        first = wait_for(
            lambda: int(text_of(browser, "#total-received .v") or 0), 30, "received messages on the overview"
        )
        wait_for(lambda: int(text_of(browser, "#total-received .v") or 0) > first, 30, "the count to move on")
        wait_for(lambda: float(text_of(browser, "#rate-messages .v") or 0) > 0, 30, "a message rate")
        assert browser.execute_script("return window.notReloaded === true"), "the page was reloaded"
        assert "connected" in text_of(browser, "#ov-transports")
        assert browser.find_elements("css selector", "#journal-chart polyline")
        screenshot(browser, tmp_path, "overview")

        wait_for(lambda: api(port, "/api/panels/outbox")["counts"]["pending"] > 0, 30, "outbox requests")
        seen: dict[str, str] = {}
        for page, ready in (
            ("/dead-letters", "#dl-total"),
            ("/quarantine", "#q-total"),
            ("/configuration", "#cfg-table"),
            ("/panels/outbox", "#panel-counts"),
            ("/", "#ov-rates"),
        ):
            open_page(browser, port, page)
            assert text_of(browser, ready) != "" or page == "/configuration"
            screenshot(browser, tmp_path, page.strip("/").replace("/", "-") or "overview-again")
            seen[f"page {page}"] = browser.page_source
        assert int(text_of(browser, "#count-outbox-pending .v")) > 0  # a plugin's count on the overview

        config_rows = {r["setting"]: r for r in api(port, "/api/configuration")["settings"]}
        assert config_rows["wats.token"]["source"] == "environment"
        assert config_rows["wats.token"]["value"] not in (None, "")
        assert config_rows["mqtt.topics"]["source"] == "file"
        for path in (
            "/api/overview",
            "/api/configuration",
            "/api/dead-letters",
            "/api/quarantine",
            "/api/panels/outbox",
            "/api/meta",
            "/metrics",
            "/readyz",
            "/healthz",
            "/",
            "/static/console.js",
        ):
            seen[path] = request(port, path)[1]
        for where, text in seen.items():
            assert_no_secret(where, text)
    finally:
        publisher.close()
        listener.stop()
    assert_no_secret("the listener's log", listener.log.read_text())


def _evil_site(target: str) -> tuple[ThreadingHTTPServer, int]:
    """A page on another origin that POSTs a purge to the console when opened (a forged request)."""
    page = (
        "<!doctype html><form id=f method=post "
        f'action="{target}/api/actions/dead-letters/purge" enctype="text/plain">'
        '<input name=\'{"all": true, "confirm": true, "x": "\' value=\'"}\'></form>'
        "<script>document.getElementById('f').submit()</script>"
    ).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def test_dead_letter_found_by_filter_replayed_with_the_token_and_forged_requests_refused(
    tmp_path: Path, browser: Any, publisher: Publisher, wats: FakeWATS
) -> None:
    config = (
        _mqtt_toml(publisher.prefix)
        + f'[wats]\nurl = "{wats.url}"\nrate_limit_per_minute = 600000\ntimeout = 5\n'
        + "[listener]\ndrain_timeout = 10\n"
        + wats_settings_toml()
    )
    wats.inject("error", status=400, path="/api/Report/WSJF", method="POST")
    listener = _listener(tmp_path, config, WATS_AUTH_TOKEN=FAKE_WATS_TOKEN).start()
    try:
        port = listener.port
        kept, dropped = publisher.publish(2)
        wait_for(lambda: api(port, "/api/dead-letters")["total"] == 2, 60, "two dead letters")

        # without the token: the page says so and nothing changes
        open_page(browser, port, "/dead-letters")
        browser.find_elements("css selector", "#dl-table input.sel")[0].click()
        click(browser, "#dl-replay")
        wait_for(lambda: "sign in" in message(browser), 10, "the refusal")
        assert api(port, "/api/dead-letters")["total"] == 2

        # requests without the token, with a wrong one, or from a foreign origin are refused
        action = "/api/actions/dead-letters/purge"
        purge_all = {"all": True, "confirm": True}
        assert request(port, action, purge_all)[0] == 401
        assert request(port, action, purge_all, headers={"Authorization": "Bearer nope"})[0] == 401
        bearer = {"Authorization": f"Bearer {CONSOLE_TOKEN}"}
        forged = {**bearer, "Origin": "http://evil.example"}
        assert request(port, action, purge_all, headers=forged)[0] == 403
        assert api(port, "/api/dead-letters")["total"] == 2

        sign_in(browser)
        # a page of another origin posting a purge while the operator is signed in
        evil, evil_port = _evil_site(f"http://127.0.0.1:{port}")
        try:
            browser.get(f"http://localhost:{evil_port}/")
            wait_for(lambda: "error" in browser.page_source, 15, "the console's answer to the forged POST")
            assert "purged" not in browser.page_source
        finally:
            evil.shutdown()
        assert api(port, "/api/dead-letters")["total"] == 2

        # filter by error text: the 400 is found, other text finds nothing
        open_page(browser, port, "/dead-letters")
        browser.find_element("id", "f-q").send_keys("no-such-error-text")
        click(browser, "#f-apply")
        wait_for(lambda: "no dead letters match" in text_of(browser, "#dl-total"), 10, "an empty result")
        browser.find_element("id", "f-q").clear()
        browser.find_element("id", "f-q").send_keys("400")
        click(browser, "#f-apply")
        wait_for(lambda: "of 2" in text_of(browser, "#dl-total"), 10, "the two dead letters")
        screenshot(browser, tmp_path, "dead-letters")

        # purge asks first: dismissed, nothing goes; accepted, the selected entry goes
        entries = api(port, "/api/dead-letters")["entries"]
        by_message = {_message_id(api(port, f"/api/dead-letters/{e['id']}")): e["id"] for e in entries}
        assert set(by_message) == {kept, dropped}
        browser.find_element("css selector", f'tr[data-id="{by_message[dropped]}"] input.sel').click()
        click(browser, "#dl-purge")
        browser.switch_to.alert.dismiss()
        wait_for(lambda: "cancelled" in message(browser), 10, "the cancelled purge")
        assert api(port, "/api/dead-letters")["total"] == 2
        click(browser, "#dl-purge")
        browser.switch_to.alert.accept()
        wait_for(lambda: api(port, "/api/dead-letters")["total"] == 1, 10, "the purge")

        # show the one left, clear the fault, replay it: it arrives at WATS and leaves the DLQ
        wait_for(lambda: "of 1" in text_of(browser, "#dl-total"), 10, "the list after the purge")
        click(browser, f'tr[data-id="{by_message[kept]}"] button.show')
        wait_for(lambda: "WatsPermanentError" in text_of(browser, "#dl-detail"), 10, "the entry's detail")
        screenshot(browser, tmp_path, "dead-letter-detail")
        wats.clear_faults()
        click(browser, "#dl-replay-one")
        wait_for(lambda: kept in reported_message_ids(wats), 60, "the replayed report in FakeWATS")
        wait_for(lambda: api(port, "/api/dead-letters")["total"] == 0, 30, "an empty DLQ")
        wait_for(lambda: "replayed 1" in message(browser), 10, "the replay's result")
        assert dropped not in reported_message_ids(wats)
    finally:
        listener.stop()
    log = listener.log.read_text()
    assert "console action refused (cross-site request)" in log
    assert "console action replay /api/actions/dead-letters/replay by tok-" in log
    assert_no_secret("the listener's log", log)


def _message_id(entry: dict[str, Any]) -> str:
    """The CFX UniqueID behind a dead letter (shown in its event)."""
    event = json.loads(entry["event"])
    return str(event["payload"]["message_id"])


def test_quarantined_message_is_re_decoded_after_its_cause_is_fixed(
    tmp_path: Path, browser: Any, wats: FakeWATS
) -> None:
    """The listener ran with the wrong codec; the stand-alone console over its data directory, started with
    the fixed configuration, re-decodes the message and the handlers deliver it."""
    uid, body = units_tested(1, "UT-QUARANTINE-1", uuid.uuid4().hex)
    capture = tmp_path / "capture.json"
    capture.write_bytes(body)
    data = tmp_path / "data"
    wats_toml = f'[wats]\nurl = "{wats.url}"\nrate_limit_per_minute = 600000\ntimeout = 5\n'
    common = f'[replay]\npaths = ["{capture}"]\n' + wats_toml + wats_settings_toml()
    wrong = tmp_path / "wrong.toml"
    wrong.write_text('[listener]\ncodec = "event"\n' + common)
    env = clean_env(WATS_AUTH_TOKEN=FAKE_WATS_TOKEN, PYWATS_EVENTS_CONSOLE_TOKEN=CONSOLE_TOKEN)
    ran = run_cli("run", "--config", wrong, "--data-dir", data, cwd=tmp_path, env=env)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert not wats.reports

    fixed = tmp_path / "fixed.toml"
    fixed.write_text('[listener]\ncodec = "cfx"\n' + wats_toml + wats_settings_toml())
    port = free_port()
    log = (tmp_path / "console.log").open("w")
    proc = subprocess.Popen(
        [cli_path(), "console", "--config", str(fixed), "--data-dir", str(data), "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: proc.poll() is not None or request(port, "/healthz")[0] == 200, 30, "the console")
        assert proc.poll() is None, (tmp_path / "console.log").read_text()
        open_page(browser, port, "/quarantine")
        wait_for(lambda: "of 1" in text_of(browser, "#q-total"), 10, "the quarantined message")
        sign_in(browser)
        click(browser, "#q-table button.show")
        wait_for(lambda: "UnitsTested" in text_of(browser, "#q-text"), 10, "the message's text")
        assert text_of(browser, "#q-hex").startswith("00000000  7b")  # '{'
        assert "event_type" in text_of(browser, "#q-reason")
        screenshot(browser, tmp_path, "quarantine")
        click(browser, "#q-redecode-one")
        wait_for(lambda: "re-decoded 1" in message(browser), 20, "the re-decode")
        wait_for(lambda: uid in reported_message_ids(wats), 60, "the report in FakeWATS")
        assert api(port, "/api/quarantine")["total"] == 0
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
    assert proc.returncode == 0, (tmp_path / "console.log").read_text()
