"""Settings of the WATS handlers, as pydantic models with defaults that work for a plain CFX line.

Everything a plant must tell us that CFX does not carry lives here: which product a station or recipe
builds (CFX test results have no part number), which WATS process a station or test method is, which
WATS asset a CFX handle is, and which unit phase a work transaction leads to. The listener passes the
`[handlers.wats]` table of its configuration file as a dict to `WatsHandlersConfig.model_validate`.

Example (TOML)::

    wats_url = "https://company.wats.com"     # or env WATS_BASE_URL; token from env WATS_AUTH_TOKEN
    location = "Plant 1 / Line 3"
    default_revision = "A"
    [stations."//Acme/Line3/ICT-01"]
    machine_name = "ICT-01"
    asset_serial = "ICT-01"
    process = "In-circuit test"              # WATS process name or code
    [[products]]
    recipe = "PCBA-100*"
    part_number = "PCBA-100"
    revision = "B"
    [processes]
    AOI = 20                                 # TestMethod / InspectionMethod / station -> code or name
    [breaker]
    failure_threshold = 5                    # outage failures that open the shared circuit
    reset_timeout = 15.0                     # seconds before a trial request
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from pywats_events.payloads import AssetState

__all__ = [
    "DEFAULT_ASSET_STATE_MAP",
    "DEFAULT_PROCESS_ALIASES",
    "AssetSettings",
    "BreakerSettings",
    "PhaseSettings",
    "ProductRule",
    "StationConfig",
    "WatsHandlersConfig",
]


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class StationConfig(_Settings):
    """What WATS should know about one CFX endpoint (keyed by its handle, e.g. ``//Acme/Line3/ICT-01``)."""

    #: report `machineName`; default: the last segment of the handle
    machine_name: str | None = None
    #: report `location`; default: `WatsHandlersConfig.location`
    location: str | None = None
    #: WATS asset serial number of this station; default: `WatsHandlersConfig.assets` or none
    asset_serial: str | None = None
    #: WATS process of this station (code or process name); used by reports and WorkStarted
    process: int | str | None = None
    #: the product this station builds when events do not say
    part_number: str | None = None
    revision: str | None = None
    #: WorkCompleted here is the unit's last operation (→ `phases.last_operation_completed`)
    last_operation: bool = False


class ProductRule(_Settings):
    """Part number/revision for events whose recipe and/or station match (shell patterns: ``PCBA-1*``)."""

    recipe: str | None = None
    station: str | None = None
    part_number: str
    revision: str | None = None


class PhaseSettings(_Settings):
    """WATS unit phase ids (WATS_API.md §4.2) per production event; `None` means "do not change the phase".
    Also how many work transactions the production handler remembers for unit-less WorkCompleted."""

    work_started: int | None = 2  # Under production
    #: WorkCompleted with result Completed at a station marked `last_operation`
    last_operation_completed: int | None = 16  # Finalized
    #: WorkCompleted with result Completed elsewhere
    completed: int | None = None
    #: WorkCompleted with result Failed (or unit status Failed)
    failed: int | None = 4  # Production repair
    aborted: int | None = None
    disqualified: int | None = 32  # Scrapped
    #: work transactions whose WorkStarted units are remembered (least recently used dropped first), so
    #: a WorkCompleted naming no unit can be applied to them; kept across restarts in `state_file`
    remembered_transactions: int = Field(default=10_000, ge=1)
    #: seconds a unit-less WorkCompleted waits for its transaction's WorkStarted (handled on another lane)
    #: before it is dead-lettered as unknown
    transaction_wait: float = Field(default=10.0, ge=0)


#: CFX/SEMI E10 state → WATS asset state (0..6); `None` = WATS has no such state, write a log message instead
DEFAULT_ASSET_STATE_MAP: dict[AssetState, int | None] = {
    AssetState.PRODUCTIVE: 1,  # In Operation
    AssetState.STANDBY: 1,  # In Operation (idle but available)
    AssetState.ENGINEERING: None,
    AssetState.SCHEDULED_DOWNTIME: 3,  # In Maintenance
    AssetState.UNSCHEDULED_DOWNTIME: None,  # machine error: WATS has no error state
    AssetState.NON_SCHEDULED: None,  # switched off / not planned: no WATS state
    AssetState.UNKNOWN: None,
}


class AssetSettings(_Settings):
    #: also move the asset to "In Maintenance" (3) on a fault of one of `maintenance_severities`
    fault_sets_maintenance: bool = False
    maintenance_severities: list[str] = Field(default_factory=lambda: ["Critical", "Error"])
    #: CFX/E10 state → WATS state; see `DEFAULT_ASSET_STATE_MAP`
    state_map: dict[AssetState, int | None] = Field(default_factory=lambda: dict(DEFAULT_ASSET_STATE_MAP))
    #: do not resend a state when the old CFX state already mapped to the same WATS state
    skip_unchanged_state: bool = True
    #: increment the station asset's usage count once per unit tested (`PUT /api/Asset/Count`)
    count_usage: bool = False
    #: `user` of asset log messages
    user: str = "pywats-events"


class BreakerSettings(_Settings):
    """The circuit breaker all WATS handlers share (they talk to one server). While it is open, events
    wait (deferred, not failed) instead of every handler hammering a server that is down."""

    #: consecutive outage failures (timeouts, 5xx, refused token) that open the circuit
    failure_threshold: int = Field(default=5, ge=1)
    #: seconds the circuit stays open before one trial request is let through
    reset_timeout: float = Field(default=15.0, gt=0)


#: TestMethod / InspectionMethod → WATS process names tried (case-insensitive) after the method itself
DEFAULT_PROCESS_ALIASES: dict[str, list[str]] = {
    "ICT": ["In-circuit test", "In circuit test"],
    "FCT": ["Functional test", "Functional"],
    "AOI": ["Automated optical inspection", "Optical inspection"],
    "SPI": ["Solder paste inspection"],
    "AXI": ["Automated X-ray inspection", "X-ray inspection"],
    "EOL": ["End of line test", "End of line"],
    "BOUNDARYSCAN": ["Boundary scan"],
}


class WatsHandlersConfig(_Settings):
    """All settings of the WATS handlers; every field has a default except what only the plant knows."""

    # -- where requests go (used by `create_handlers` when it builds the sink) --
    #: WATS server root; env `WATS_BASE_URL` when unset
    wats_url: str | None = None
    #: Basic token (base64 of user:password); env `WATS_AUTH_TOKEN` when unset
    token: SecretStr | None = None
    #: store-and-forward file instead of a server
    outbox: Path | None = None
    #: no WATS reads are possible (an outbox without a server): skip lookups and existence checks;
    #: `create_handlers` sets this for an outbox without `wats_url`
    offline: bool = False
    #: SQLite file for what the handlers must remember across restarts (the units of open work
    #: transactions); the listener puts it in its data directory; unset = memory only
    state_file: Path | None = None

    # -- report header --
    #: report `location` when the station has none
    location: str = "Unknown"
    purpose: str = "Production"
    #: IANA zone to express report `start` in (e.g. "Europe/Oslo"); None keeps the offset as sent
    timezone: str | None = None
    #: put test-level defects/symptoms into the step's reportText, unit-level ones into miscInfos
    include_defects: bool = True

    # -- resolution --
    stations: dict[str, StationConfig] = Field(default_factory=dict)
    products: list[ProductRule] = Field(default_factory=list)
    #: ask WATS production for the unit's part number when the configuration does not say
    lookup_part_number: bool = True
    default_part_number: str | None = None
    #: revision when the part number is known but its revision is not
    default_revision: str | None = None
    #: TestMethod / InspectionMethod / station handle / recipe → process code or WATS process name
    processes: dict[str, int | str] = Field(default_factory=dict)
    process_aliases: dict[str, list[str]] = Field(default_factory=lambda: dict(DEFAULT_PROCESS_ALIASES))
    #: read `GET /api/App/Processes` at start-up to resolve process names
    lookup_processes: bool = True
    default_process_code: int | None = None
    #: CFX handle → WATS asset serial number (a station's own `asset_serial` wins)
    assets: dict[str, str] = Field(default_factory=dict)
    #: WATS asset serial → asset id (GUID), for asset log messages when WATS cannot be asked (offline)
    asset_ids: dict[str, str] = Field(default_factory=dict)
    #: use the handle's last segment as asset serial when nothing is configured (if WATS uses those)
    asset_serial_from_handle: bool = False

    phases: PhaseSettings = Field(default_factory=PhaseSettings)
    asset: AssetSettings = Field(default_factory=AssetSettings)
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)

    # -- which handlers `create_handlers` builds --
    enable_reports: bool = True
    enable_assets: bool = True
    enable_production: bool = True

    def station(self, handle: str | None) -> StationConfig:
        """The configuration of a station, or an empty one."""
        if handle and handle in self.stations:
            return self.stations[handle]
        return StationConfig()
