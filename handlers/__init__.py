"""WATS handlers for pywats-events: domain events in, WATS requests out.

`create_handlers(settings)` builds `ReportHandler`, `AssetHandler` and `ProductionHandler` around one
`RequestSink` (httpx sender or outbox) and one `Resolver`; `preview_requests(events)` shows what WATS
would receive without a server.
"""

from ._exceptions import ResolutionError, WatsError, WatsPermanentError, WatsTransientError
from .asset import WATS_ASSET_STATES, AssetHandler
from .config import (
    DEFAULT_ASSET_STATE_MAP,
    DEFAULT_PROCESS_ALIASES,
    AssetSettings,
    PhaseSettings,
    ProductRule,
    StationConfig,
    WatsHandlersConfig,
)
from .factory import build_sink, create_handlers
from .preview import PreviewItem, RecordingSink, preview, preview_config, preview_requests
from .production import ProductionHandler
from .report import ReportHandler
from .resolution import Resolver
from .wats.sink import RequestSink, WatsRequest, WatsResponse
from .wats.wsjf import build_uut_report, report_id

__all__ = [
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
]
