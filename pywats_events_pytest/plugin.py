"""Fixtures for a handler plugin's tests: a bus with the plugin, FakeWATS, CFX sample events.

``pywats_bus``
    A `pywats_events.testing.BusHarness` with the plugins of ``pywats_plugins`` (override that fixture:
    ``{"csv_archive": {"path": ...}}``); ``pywats_bus.plugin(name, options)`` adds more. The bus starts
    on the first ``publish``; ``wait_for("on_handled", handler=...)`` and ``eventually(...)`` wait
    without sleeping; it is stopped (drained, ``on_stop``, cleanups) when the test ends.
``plugin_handlers``
    ``plugin_handlers("name", options)``: the handlers of an installed handler plugin, made by its factory
    exactly as `pywats-events run` makes them (data directory in ``tmp_path``); cleanups run at the end.
``cfx_events``
    ``cfx_events("units_tested_ict")`` or ``cfx_events(path)``: the events a bundled CFX sample (or a file
    holding one CFX message) decodes to.
``fake_wats``
    A started `handlers.wats.fake.FakeWATS` (fault injection: ``fake_wats.inject("error", count=2)``;
    waits: ``fake_wats.wait_for_asset_log(1)``). When the test also uses ``pywats_bus``, its ``[wats]``
    settings point at the fake, so the WATS handlers and the WATS sink other plugins borrow talk to it.

Nothing is imported at collection time: each fixture imports what it needs when a test asks for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from handlers.wats.fake import FakeWATS
    from pywats_events import Event
    from pywats_events.testing import BusHarness

#: the token the fake expects and the ``[wats]`` settings of ``pywats_bus`` carry
FAKE_WATS_TOKEN = "cHl0ZXN0OnB5dGVzdA=="


@pytest.fixture
def pywats_data_dir(tmp_path: Path) -> Path:
    """The listener data directory of the test's bus and plugins (journal, plugin state files)."""
    return tmp_path / "pywats-data"


@pytest.fixture
def pywats_plugins() -> dict[str, dict[str, Any]]:
    """Handler plugin name → options that ``pywats_bus`` starts with; override it in a plugin's conftest."""
    return {}


@pytest.fixture
def pywats_bus(
    request: pytest.FixtureRequest, pywats_data_dir: Path, pywats_plugins: dict[str, dict[str, Any]]
) -> Iterator[BusHarness]:
    from pywats_events.testing import BusHarness

    harness = BusHarness(pywats_data_dir)
    if "fake_wats" in request.fixturenames:  # set up first, so it is still serving while the bus drains
        fake: FakeWATS = request.getfixturevalue("fake_wats")
        harness.configure({"wats": {"url": fake.url, "token": FAKE_WATS_TOKEN}})
    for name, options in pywats_plugins.items():
        harness.plugin(name, options)
    try:
        yield harness
    finally:
        harness.stop()


@pytest.fixture
def plugin_handlers(pywats_data_dir: Path) -> Iterator[Callable[..., list[Any]]]:
    import asyncio

    from pywats_events.plugins import PluginContext, make_handlers
    from pywats_events.testing import plugin_context

    contexts: list[PluginContext] = []

    def make(name: str, options: dict[str, Any] | None = None) -> list[Any]:
        ctx = plugin_context(name, options, data_dir=pywats_data_dir)
        contexts.append(ctx)
        return make_handlers(name, ctx)

    yield make

    async def clean() -> None:
        for ctx in contexts:
            for cleanup in ctx.cleanups:
                await cleanup()

    asyncio.run(clean())


@pytest.fixture
def cfx_events() -> Callable[[str | Path], list[Event]]:
    from pywats_cfx import CFXCodec
    from pywats_cfx.samples import list_samples, load_sample

    codec = CFXCodec()

    def decode(sample: str | Path) -> list[Event]:
        if isinstance(sample, Path) or (sample not in list_samples() and Path(sample).is_file()):
            body = Path(sample).read_bytes()
        else:
            body = load_sample(str(sample))
        result = codec.decode(body)
        if result.quarantined:
            reasons = "; ".join(str(getattr(r, "reason", r)) for r in result.quarantined)
            raise AssertionError(f"CFX message {sample} does not decode: {reasons}")
        return list(result.events)

    return decode


@pytest.fixture
def fake_wats() -> Iterator[FakeWATS]:
    from handlers.wats.fake import FakeWATS

    with FakeWATS(token=FAKE_WATS_TOKEN) as fake:
        yield fake
