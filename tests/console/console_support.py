"""Helpers of the console tests: pages in the browser, the console's JSON API, secrets to look for."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

#: the credentials the tests configure; none may appear in any response of the console
WATS_TOKEN = "wats-t0ken-must-not-leak-7f3a"
MQTT_PASSWORD = "mqtt-passw0rd-must-not-leak-91c"
CONSOLE_TOKEN = "console-t0ken-must-not-leak-5d2e"
SECRETS = (WATS_TOKEN, MQTT_PASSWORD, CONSOLE_TOKEN)


def request(
    port: int,
    path: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    host: str = "127.0.0.1",
) -> tuple[int, str]:
    """GET (or POST `body` as JSON) on the console; (status, text), any status; (0, "") when nothing
    listens."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://{host}:{port}{path}", data=data, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:  # not listening (yet)
        return 0, ""


def api(port: int, path: str) -> Any:
    status, text = request(port, path)
    assert status == 200, (path, status, text)
    return json.loads(text)


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.2) -> Any:
    """`predicate()`'s first truthy value within `timeout` s, else the test fails naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def open_page(driver: Any, port: int, path: str) -> None:
    """Load a console page and wait until its script rendered it."""
    driver.get(f"http://127.0.0.1:{port}{path}")
    wait_for(lambda: driver.execute_script("return document.body.dataset.ready === '1'"), 20, f"page {path}")


def text_of(driver: Any, css: str) -> str:
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.CSS_SELECTOR, css)
    return str(found[0].text) if found else ""


def click(driver: Any, css: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, css).click()


def sign_in(driver: Any, token: str = CONSOLE_TOKEN) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "token").send_keys(token)
    click(driver, "#sign-in-button")
    wait_for(lambda: "signed in" in text_of(driver, "#auth-state"), 10, "sign-in")


def message(driver: Any) -> str:
    return text_of(driver, "#msg")


def screenshot(driver: Any, directory: Path, name: str) -> Path:
    """A PNG of the page for the reviewer, under the test's temporary directory."""
    path = directory / "screenshots" / f"{name}.png"
    path.parent.mkdir(exist_ok=True)
    driver.save_screenshot(str(path))
    return path


def assert_no_secret(where: str, text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a credential appears in {where}"
