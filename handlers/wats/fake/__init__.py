"""FakeWATS: a stateful, strict, fault-injectable WATS server on loopback for tests, benchmarks and demos."""

from .faults import FAULT_KINDS, Fault
from .server import FakeWATS, RequestRecord
from .state import DEFAULT_PROCESSES, ApiError, WatsState
from .validation import validate_wsjf

__all__ = [
    "DEFAULT_PROCESSES",
    "FAULT_KINDS",
    "ApiError",
    "FakeWATS",
    "Fault",
    "RequestRecord",
    "WatsState",
    "validate_wsjf",
]
