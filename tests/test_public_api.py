"""The public API of the three packages is pinned: adding, renaming or dropping a name must be deliberate.

Every name in `__all__` must be an ordinary attribute of the package (a name served only by a module
`__getattr__` is invisible to type checkers, IDEs and `dir()`), and `from <package> import *` must work
in a fresh interpreter, the way a user's first import does.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

PUBLIC_API: dict[str, set[str]] = {
    "pywats_events": {
        "DEFAULT_RETRY_POLICY",
        "AsyncEventBus",
        "BaseHandler",
        "BusObserver",
        "BusOverloaded",
        "BusState",
        "BusStateError",
        "Codec",
        "ConfigurationError",
        "DecodeResult",
        "Event",
        "EventBus",
        "EventMetadata",
        "EventType",
        "EventsError",
        "FunctionHandler",
        "HandlerFailure",
        "PermanentError",
        "StopReport",
        "TransientError",
        "handler",
        "resolve_event_types",
    },
    "pywats_events.transports": {
        "BaseTransport",
        "ConnectionState",
        "MockTransport",
        "QuarantineRecord",
        "TransportContext",
    },
    "pywats_cfx": {
        "MAPPED_MESSAGES",
        "AMQPConfig",
        "CFXCodec",
        "CFXConfig",
        "CFXDecodeError",
        "CFXEnvelope",
        "CFXTransport",
        "DecodeLimits",
        "DecodedMessage",
        "EndpointConfig",
        "MappingError",
        "event_type_for",
        "map_envelope",
        "message_name_from_topic",
        "regex_topic_parser",
    },
    "handlers": {
        "DEFAULT_ASSET_STATE_MAP",
        "DEFAULT_PROCESS_ALIASES",
        "WATS_ASSET_STATES",
        "AssetHandler",
        "AssetSettings",
        "PhaseSettings",
        "PreviewItem",
        "ProductRule",
        "ProductionHandler",
        "RecordingSink",
        "ReportHandler",
        "RequestSink",
        "ResolutionError",
        "Resolver",
        "StationConfig",
        "WatsError",
        "WatsHandlersConfig",
        "WatsPermanentError",
        "WatsRequest",
        "WatsResponse",
        "WatsTransientError",
        "build_sink",
        "build_uut_report",
        "create_handlers",
        "preview",
        "preview_config",
        "preview_requests",
        "report_id",
    },
}


def _ruff_order(name: str) -> tuple[int, str]:
    """The order ruff's RUF022 keeps `__all__` in: CONSTANTS, then Classes, then functions."""
    if name.isupper():
        return 0, name
    return (1 if name[0].isupper() else 2), name


@pytest.mark.parametrize("package", sorted(PUBLIC_API))
def test_all_is_exactly_the_public_api(package: str) -> None:
    module = importlib.import_module(package)
    exported = list(module.__all__)
    assert len(exported) == len(set(exported)), "duplicate names in __all__"
    assert set(exported) == PUBLIC_API[package]
    assert exported == sorted(exported, key=_ruff_order)


@pytest.mark.parametrize("package", sorted(PUBLIC_API))
def test_every_public_name_is_an_ordinary_attribute(package: str) -> None:
    module = importlib.import_module(package)
    lazy = [name for name in module.__all__ if name not in vars(module)]
    assert lazy == [], f"{package} serves {lazy} only through a module __getattr__"
    assert all(getattr(module, name) is not None for name in module.__all__)


def test_star_import_works_in_a_fresh_interpreter() -> None:
    code = (
        "import json\n"
        "found = {}\n"
        f"for package in {sorted(PUBLIC_API)!r}:\n"
        "    namespace = {}\n"
        "    exec(f'from {package} import *', namespace)\n"
        "    found[package] = sorted(n for n in namespace if not n.startswith('__'))\n"
        "print(json.dumps(found))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    assert {package: set(names) for package, names in found.items()} == PUBLIC_API


def test_documented_imports_work() -> None:
    """The imports the project's documentation shows users (README, docs/, the reference documentation)."""
    code = (
        "from pywats_events import Event, EventType, EventBus, BaseHandler\n"
        "from pywats_events.transports import MockTransport\n"
        "from pywats_events.policies import RetryPolicy, ErrorPolicy, DeadLetterQueue, CircuitBreaker\n"
        "from pywats_cfx import CFXTransport, CFXConfig, AMQPConfig, EndpointConfig\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
