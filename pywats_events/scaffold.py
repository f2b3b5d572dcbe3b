"""`pywats-events plugin new NAME`: a ready handler plugin distribution, tested with the pytest plugin.

What it writes installs as it is (``pip install ./NAME``), is found by `pywats-events run` through its entry
point, and passes its own tests (``pytest NAME``): the starting point of a plugin, not an example to read.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path

from ._exceptions import ConfigurationError

__all__ = ["new_plugin"]

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

_PYPROJECT = """\
[build-system]
requires = ["setuptools>=68", "wheel"]
build-backend = "setuptools.build_meta"

[project]
name = "pywats-events-{dist}"
version = "0.1.0"
description = "pywats-events handler plugin {name}"
requires-python = ">=3.10"
dependencies = ["pywats-events", "pydantic>=2"]

[project.optional-dependencies]
test = ["pytest>=8"]

# installing this distribution is all it takes: enable it with [listener] handlers = ["{name}"]
[project.entry-points."pywats_events.handlers"]
{name} = "{package}:create_handlers"

[tool.setuptools]
packages = ["{package}"]

[tool.pytest.ini_options]
testpaths = ["tests"]
"""

_MODULE = '''\
"""pywats-events handler plugin `{name}`: one JSON line per test result.

`create_handlers` is the entry point (pyproject.toml); it gets a `PluginContext` with the listener settings
and this plugin's table ``[handlers.{name}]``, validated by `{cls}Options`.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from pywats_events import BaseHandler, Event, EventType, TransientError
from pywats_events.plugins import PluginContext

__all__ = ["{cls}Handler", "{cls}Options", "create_handlers"]


class {cls}Options(BaseModel):
    """``[handlers.{name}]``; an unknown option stops the start-up naming it."""

    model_config = ConfigDict(extra="forbid")

    #: the file written; default ``{name}.jsonl`` in the listener's data directory
    path: Path | None = None


class {cls}Handler(BaseHandler):
    """Appends one JSON line per test result. An async handler runs on the bus loop, one event of a
    unit at a time (its ordering group is its own, so a slow destination never holds up the WATS handlers)."""

    event_types = [EventType.TEST_RESULT]

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def name(self) -> str:
        return "{name}"

    async def handle(self, event: Event) -> None:
        line = {{"event_id": event.id, "unit": event.payload.get("unit_serial"), "source": event.source}}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(line) + "\\n")
        except OSError as exc:  # the destination is down: retried, then deferred, never dead-lettered
            raise TransientError(str(exc)) from exc


def create_handlers(ctx: PluginContext) -> list[BaseHandler]:
    """Entry point: the handlers of ``[handlers.{name}]``."""
    options = ctx.parse_options({cls}Options)
    return [{cls}Handler(options.path or ctx.settings.listener.data_dir / "{name}.jsonl")]


# what `pywats-events plugins` shows
create_handlers.event_types = {cls}Handler.event_types  # type: ignore[attr-defined]
create_handlers.options_model = {cls}Options  # type: ignore[attr-defined]
'''

_TEST = '''\
"""The plugin as `pywats-events run` uses it, with the fixtures of the pywats-events pytest plugin."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pywats_events import ConfigurationError


@pytest.fixture
def pywats_plugins(tmp_path: Path) -> dict[str, dict[str, Any]]:
    return {{"{name}": {{"path": str(tmp_path / "out.jsonl")}}}}


def test_each_tested_unit_is_written(pywats_bus: Any, cfx_events: Any, tmp_path: Path) -> None:
    pywats_bus.publish(*cfx_events("units_tested_ict"))
    pywats_bus.wait_for("on_handled", 2, handler="{name}")
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert sorted(line["unit"] for line in lines) == ["MB-4471-000145", "MB-4471-000146"]


def test_an_unknown_option_is_refused_by_name(plugin_handlers: Any) -> None:
    with pytest.raises(ConfigurationError) as exc:
        plugin_handlers("{name}", {{"pth": "x"}})
    assert exc.value.setting == "handlers.{name}.pth"
'''

_README = """\
# pywats-events-{dist}

A pywats-events handler plugin. `pip install .`, then enable it:

```toml
[listener]
handlers = ["wats", "{name}"]

[handlers.{name}]
path = "/var/lib/pywats-events/{name}.jsonl"
```

`pywats-events plugins` lists it; `pytest` runs its tests with the fixtures pywats-events installs.
"""


def new_plugin(name: str, parent: Path) -> Path:
    """Writes plugin `name` into ``parent/name`` (which must not exist yet); returns that directory."""
    if not _NAME.match(name) or keyword.iskeyword(name):
        raise ConfigurationError("NAME", f"{name!r} is not a plugin name: lower case letters, digits and _")
    root = parent / name
    if root.exists():
        raise ConfigurationError("NAME", f"{root} already exists")
    package = f"pywats_{name}"
    fields = {
        "name": name,
        "dist": name.replace("_", "-"),
        "package": package,
        "cls": "".join(part.capitalize() for part in name.split("_")),
    }
    files = {
        "pyproject.toml": _PYPROJECT,
        f"{package}/__init__.py": _MODULE,
        f"tests/test_{name}.py": _TEST,
        "README.md": _README,
    }
    for relative, template in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.format(**fields), encoding="utf-8")
    return root
