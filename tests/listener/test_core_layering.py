"""Layering: the core (`pywats_events`, its CLI) imports neither the CFX adapter nor the WATS handlers.

They plug in through entry points only, so the check runs in a fresh interpreter and looks at
`sys.modules` after importing the core's modules.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

_OUTER = ("pywats_cfx", "handlers")

_CORE_MODULES = [
    "pywats_events",
    "pywats_events.cli",
    "pywats_events.cli.app",
    "pywats_events.cli.run",
    "pywats_events.cli.dlq",
    "pywats_events.cli.quarantine",
    "pywats_events.cli.status",
    "pywats_events.listener",
    "pywats_events.listener.builtin_transports",
    "pywats_events.listener.status",
    "pywats_events.plugins",
    "pywats_events.previews",
    "pywats_events.config",
    "pywats_events.transports",
    "pywats_events.transports.replay",
    "pywats_events.transports.mqtt",
    "pywats_events.policies",
    "pywats_events.journal",
    "pywats_events.testing",
]

_PROBE = """
import json, sys
for name in sys.argv[1:]:
    __import__(name)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("pywats_cfx", "handlers"))))
"""


def _outer_modules_after_import(*modules: str) -> list[str]:
    res = subprocess.run([sys.executable, "-c", _PROBE, *modules], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    found: list[str] = json.loads(res.stdout.strip().splitlines()[-1])
    return found


@pytest.mark.parametrize("module", _CORE_MODULES)
def test_core_module_imports_no_outer_package(module: str) -> None:
    assert _outer_modules_after_import(module) == []


def test_the_probe_sees_an_outer_import() -> None:
    """The check can fail: importing a plugin module does show up."""
    found = _outer_modules_after_import("pywats_events", "pywats_cfx.plugin")
    assert "pywats_cfx" in found and not any(m.split(".")[0] == "handlers" for m in found)


def test_handlers_do_not_import_the_cfx_adapter() -> None:
    """The WATS side sees normalized domain events only."""
    found = _outer_modules_after_import("handlers", "handlers.plugin", "handlers.cli")
    assert not [m for m in found if m.split(".")[0] == "pywats_cfx"]


def test_cfx_adapter_does_not_import_the_wats_handlers() -> None:
    found = _outer_modules_after_import("pywats_cfx", "pywats_cfx.plugin", "pywats_cfx.amqp")
    assert not [m for m in found if m.split(".")[0] == "handlers"]
