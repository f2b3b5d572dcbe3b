"""Typed payloads of the domain events.

Producers (the CFX mapper, plugins) build these and store `model_dump(mode="json")` in `Event.payload`;
consumers read them back with `TestResultEvent.model_validate(event.payload)`. Every model keeps
unknown fields (``extra="allow"``) so nothing a sender adds is lost on the way to WATS.

Conventions: times are timezone-aware datetimes of when the fact happened (not when it was received);
`message_id` is the source message's unique id (CFX UniqueID) and `transaction_id` its work transaction,
which together make WATS writes idempotent; `station` is the sender's handle (CFX Source).
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ._event import EventType

__all__ = [
    "PAYLOAD_MODELS",
    "AssetFaultClearedEvent",
    "AssetFaultEvent",
    "AssetState",
    "AssetStateChangedEvent",
    "Defect",
    "DomainPayload",
    "EndpointEvent",
    "InstalledComponent",
    "MaterialInstalledEvent",
    "MaterialsLoadedEvent",
    "Measurement",
    "MeasurementKind",
    "Operator",
    "PassthroughEvent",
    "StepResult",
    "Symptom",
    "TestCondition",
    "TestResultEvent",
    "TestStep",
    "UnitDisqualifiedEvent",
    "UnitMovedEvent",
    "UnitRef",
    "WorkCompletedEvent",
    "WorkResult",
    "WorkStartedEvent",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class StepResult(str, Enum):
    """Outcome of a unit, a test or a measurement (CFX TestResult)."""

    PASSED = "Passed"
    FAILED = "Failed"
    ERROR = "Error"
    ABORTED = "Aborted"
    SKIPPED = "Skipped"
    UNKNOWN = "Unknown"


class WorkResult(str, Enum):
    """Outcome of a work transaction (CFX WorkResult)."""

    COMPLETED = "Completed"
    FAILED = "Failed"
    ABORTED = "Aborted"
    SKIPPED = "Skipped"


class MeasurementKind(str, Enum):
    NUMERIC = "numeric"
    BOOLEAN = "boolean"
    TEXT = "text"
    OTHER = "other"


class Operator(_Model):
    operator_id: str | None = None
    name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    login_name: str | None = None
    actor_type: str | None = None

    @property
    def display_name(self) -> str | None:
        if self.login_name:
            return self.login_name
        full = " ".join(p for p in (self.first_name, self.last_name) if p)
        return full or self.name or self.operator_id


class Measurement(_Model):
    """One measurement with everything a WATS step needs to pick its comparison operator."""

    name: str
    kind: MeasurementKind = MeasurementKind.NUMERIC
    #: numeric value, boolean, or text depending on `kind`
    value: float | bool | str | None = None
    units: str | None = None
    expected_value: float | str | bool | None = None
    expected_units: str | None = None
    low_limit: float | None = None
    low_limit_units: str | None = None
    high_limit: float | None = None
    high_limit_units: str | None = None
    result: StepResult = StepResult.UNKNOWN
    sequence: int | None = None
    timestamp: datetime | None = None
    component_designators: list[str] = Field(default_factory=list)
    measurement_id: str | None = None
    #: the source's own type name (e.g. CFX `$type`) for kinds we do not model specially
    source_type: str | None = None


class Symptom(_Model):
    code: str | None = None
    category: str | None = None
    description: str | None = None
    comments: str | None = None
    status: str | None = None
    priority: int | None = None
    components: list[str] = Field(default_factory=list)
    measurements: list[Measurement] = Field(default_factory=list)
    symptom_id: str | None = None


class Defect(_Model):
    code: str | None = None
    category: str | None = None
    description: str | None = None
    comments: str | None = None
    component: str | None = None
    priority: int | None = None
    confidence: float | None = None
    verification: str | None = None
    verification_detail: str | None = None
    measurements: list[Measurement] = Field(default_factory=list)
    symptoms: list[Symptom] = Field(default_factory=list)
    defect_id: str | None = None


class TestCondition(_Model):
    """An environmental condition during a test (temperature, humidity, ...)."""

    kind: str | None = None
    mean: float | None = None
    median: float | None = None
    minimum: float | None = None
    maximum: float | None = None
    start: datetime | None = None
    end: datetime | None = None


class TestStep(_Model):
    """One CFX Test or Inspection."""

    __test__ = False  # not a pytest class

    name: str
    result: StepResult = StepResult.UNKNOWN
    start: datetime | None = None
    end: datetime | None = None
    procedure: str | None = None
    comments: str | None = None
    error: str | None = None
    measurements: list[Measurement] = Field(default_factory=list)
    symptoms: list[Symptom] = Field(default_factory=list)
    defects: list[Defect] = Field(default_factory=list)
    conditions: list[TestCondition] = Field(default_factory=list)
    verification: str | None = None
    step_id: str | None = None


class _SourceFacts(_Model):
    """Facts every mapped event carries about the message it came from."""

    station: str | None = None
    message_id: str | None = None
    transaction_id: str | None = None
    timestamp: datetime | None = None
    message_name: str | None = None


class TestResultEvent(_SourceFacts):
    """One unit's test or inspection result (CFX UnitsTested / UnitsInspected, one event per unit)."""

    __test__ = False

    unit_serial: str
    unit_position: int | None = None
    #: the panel / carrier the unit was on, when the message covered several units
    panel_serial: str | None = None
    result: StepResult = StepResult.UNKNOWN
    #: "test" or "inspection"
    kind: str = "test"
    #: CFX TestMethod (ICT, FCT, ...) or InspectionMethod (AOI, SPI, ...)
    method: str | None = None
    tests: list[TestStep] = Field(default_factory=list)
    defects: list[Defect] = Field(default_factory=list)
    symptoms: list[Symptom] = Field(default_factory=list)
    operator: Operator | None = None
    recipe: str | None = None
    recipe_revision: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    lane: int | None = None
    stage: str | None = None
    sampling: dict[str, Any] | None = None
    part_number: str | None = None
    revision: str | None = None


class UnitRef(_Model):
    serial: str | None = None
    position: int | None = None
    position_name: str | None = None
    status: str | None = None


class WorkStartedEvent(_SourceFacts):
    unit_serial: str
    unit_position: int | None = None
    panel_serial: str | None = None
    lane: int | None = None
    unit_count: int | None = None
    recipe: str | None = None
    recipe_revision: str | None = None
    work_order: str | None = None
    batch: str | None = None
    surface: str | None = None


class WorkCompletedEvent(_SourceFacts):
    unit_serial: str
    unit_position: int | None = None
    panel_serial: str | None = None
    result: WorkResult = WorkResult.COMPLETED
    unit_status: str | None = None
    lane: int | None = None
    unit_count: int | None = None


class UnitDisqualifiedEvent(_SourceFacts):
    unit_serial: str
    unit_position: int | None = None
    panel_serial: str | None = None
    reason: str | None = None
    comments: str | None = None


class UnitMovedEvent(_SourceFacts):
    """Units arrived at / departed from a station."""

    units: list[UnitRef] = Field(default_factory=list)
    primary_identifier: str | None = None
    location: str | None = None


class InstalledComponent(_Model):
    designator: str | None = None
    part_number: str | None = None
    serial: str | None = None


class MaterialInstalledEvent(_SourceFacts):
    """Material installed on one unit (one event per unit and material lot)."""

    unit_serial: str
    unit_position: int | None = None
    material_serial: str | None = None
    part_number: str | None = None
    lot: str | None = None
    vendor: str | None = None
    quantity: float | None = None
    reference_part_number: str | None = None
    components: list[InstalledComponent] = Field(default_factory=list)
    #: the material carries its own serial: a sub-assembly WATS tracks as a child unit
    serialized: bool = False


class MaterialsLoadedEvent(_SourceFacts):
    materials: list[dict[str, Any]] = Field(default_factory=list)
    loaded: bool = True


class AssetFaultEvent(_SourceFacts):
    fault_code: str | None = None
    fault_occurrence_id: str | None = None
    cause: str | None = None
    severity: str | None = None
    description: str | None = None
    lane: int | None = None
    stage: str | None = None
    occurred_at: datetime | None = None
    fault_type: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class AssetFaultClearedEvent(_SourceFacts):
    fault_occurrence_id: str | None = None
    operator: Operator | None = None
    acknowledged_only: bool = False


class AssetState(str, Enum):
    """Small documented state set; the SEMI E10/E58 code is kept beside it."""

    PRODUCTIVE = "productive"
    STANDBY = "standby"
    ENGINEERING = "engineering"
    SCHEDULED_DOWNTIME = "scheduled_downtime"
    UNSCHEDULED_DOWNTIME = "unscheduled_downtime"
    NON_SCHEDULED = "non_scheduled"
    UNKNOWN = "unknown"


class AssetStateChangedEvent(_SourceFacts):
    old_state: AssetState = AssetState.UNKNOWN
    new_state: AssetState = AssetState.UNKNOWN
    old_state_code: int | None = None
    new_state_code: int | None = None
    old_state_duration_s: float | None = None
    related_fault: AssetFaultEvent | None = None


class EndpointEvent(_SourceFacts):
    """Endpoint connected / shutting down / heartbeat."""

    endpoint: dict[str, Any] = Field(default_factory=dict)
    heartbeat_frequency_s: float | None = None


class PassthroughEvent(_SourceFacts):
    """Valid traffic without a domain mapping; `body` is the message body as received."""

    body: dict[str, Any] = Field(default_factory=dict)


DomainPayload = (
    TestResultEvent
    | WorkStartedEvent
    | WorkCompletedEvent
    | UnitDisqualifiedEvent
    | UnitMovedEvent
    | MaterialInstalledEvent
    | MaterialsLoadedEvent
    | AssetFaultEvent
    | AssetFaultClearedEvent
    | AssetStateChangedEvent
    | EndpointEvent
    | PassthroughEvent
)

#: the payload model of each domain event type (by its value): what a producer builds and a handler reads
PAYLOAD_MODELS: dict[str, type[BaseModel]] = {
    EventType.TEST_RESULT.value: TestResultEvent,
    EventType.INSPECTION_RESULT.value: TestResultEvent,
    EventType.WORK_STARTED.value: WorkStartedEvent,
    EventType.WORK_COMPLETED.value: WorkCompletedEvent,
    EventType.UNIT_DISQUALIFIED.value: UnitDisqualifiedEvent,
    EventType.UNITS_ARRIVED.value: UnitMovedEvent,
    EventType.UNITS_DEPARTED.value: UnitMovedEvent,
    EventType.MATERIAL_INSTALLED.value: MaterialInstalledEvent,
    EventType.MATERIALS_LOADED.value: MaterialsLoadedEvent,
    EventType.MATERIALS_UNLOADED.value: MaterialsLoadedEvent,
    EventType.ASSET_FAULT.value: AssetFaultEvent,
    EventType.ASSET_FAULT_CLEARED.value: AssetFaultClearedEvent,
    EventType.ASSET_FAULT_ACKNOWLEDGED.value: AssetFaultClearedEvent,
    EventType.ASSET_STATE_CHANGED.value: AssetStateChangedEvent,
    EventType.ENDPOINT_CONNECTED.value: EndpointEvent,
    EventType.ENDPOINT_SHUTTING_DOWN.value: EndpointEvent,
    EventType.ENDPOINT_HEARTBEAT.value: EndpointEvent,
    EventType.PASSTHROUGH.value: PassthroughEvent,
}
