"""The CFX messages that have a domain mapping, as typed msgspec structs decoded straight from the wire bytes.

Each struct lists every property the CFX SDK writes for that type (wire names: PascalCase, irregular ones
spelled out), with ``None`` defaults because senders omit what they do not know. Unknown properties are
refused (``forbid_unknown_fields``): a key in another case, a vendor extension or a subclass with more
properties makes the strict decode fail, and the codec hands the message to the lenient path
(`pywats_cfx.lenient`), which reads whatever shape arrives. So a strict decode that succeeds has seen every
property the message carries, in the types the SDK writes them, and the typed mappers (`pywats_cfx.mappers`)
need no shape checks. Properties no mapper reads are typed `Any`.

Dates stay text (the events keep an ISO date as sent); enums stay text (senders vary in case).
"""

from __future__ import annotations

from typing import Any, ClassVar, Generic, TypeVar

import msgspec
from msgspec import UNSET, UnsetType, field

from ._names import register_names

__all__ = [
    "MEASUREMENT_KINDS",
    "BooleanMeasurement",
    "ComponentDesignator",
    "Defect",
    "EndpointBody",
    "Envelope",
    "Fault",
    "FaultAcknowledged",
    "FaultCleared",
    "FaultOccurred",
    "InspectedPanel",
    "InspectedUnit",
    "Inspection",
    "InstalledComponent",
    "InstalledMaterial",
    "MaterialCarrier",
    "MaterialLocation",
    "MaterialPackage",
    "MaterialsInstalled",
    "MaterialsLoaded",
    "MaterialsUnloaded",
    "Measurement",
    "NumericMeasurement",
    "NumericValue",
    "Operator",
    "OtherMeasurement",
    "PerformanceImpact",
    "Stage",
    "StationStateChanged",
    "SubclassedFault",
    "Symptom",
    "Test",
    "TestCondition",
    "TestedUnit",
    "TextMeasurement",
    "UnitPosition",
    "UnitsDisqualified",
    "UnitsInspected",
    "UnitsMoved",
    "UnitsTested",
    "WorkCompleted",
    "WorkOrderIdentifier",
    "WorkStarted",
]


class _CFX(msgspec.Struct, rename="pascal", forbid_unknown_fields=True, gc=False):
    """Base of every CFX struct: PascalCase wire names, nothing unknown accepted, no GC tracking (acyclic)."""


_Body = TypeVar("_Body")


class Envelope(_CFX, Generic[_Body]):
    """The CFX envelope with its MessageBody as `_Body`: the body's struct when the MessageName is known
    before decoding (one pass over the bytes), else `msgspec.Raw`, decoded by the name in a second step."""

    message_name: str
    message_body: _Body
    unique_id: str | None = field(default=None, name="UniqueID")
    time_stamp: str | None = None
    version: str | None = None
    source: str | None = None
    target: str | None = None
    request_id: str | None = field(default=None, name="RequestID")


# --------------------------------------------------------------------------- shared structures


class Operator(_CFX):
    operator_identifier: str | None = None
    actor_type: str | None = None
    name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    login_name: str | None = None


class Stage(_CFX):
    stage_sequence: int | str | None = None
    stage_name: str | None = None
    stage_type: Any = None


class UnitPosition(_CFX):
    unit_identifier: str | None = None
    position_number: int | None = None
    position_name: str | None = None
    status: str | None = None
    x: Any = None
    y: Any = None
    z: Any = None
    rotation: Any = None
    flip_x: Any = field(default=None, name="FlipX")
    flip_y: Any = field(default=None, name="FlipY")


class ComponentDesignator(_CFX):
    reference_designator: str | None = None
    part_number: Any = None
    unit_position: Any = None


# --------------------------------------------------------------------------- measurements


class NumericValue(_CFX):
    value: float | None = None
    value_units: str | None = None
    #: a number, or text / a flag when the sender states an expectation that is not numeric
    expected_value: float | bool | str | None = None
    expected_value_units: str | None = None
    minimum_acceptable_value: float | None = None
    minimum_acceptable_value_units: str | None = None
    maximum_acceptable_value: float | None = None
    maximum_acceptable_value_units: str | None = None


class Measurement(_CFX, tag_field="$type"):
    """Base of the measurement kinds, told apart by ``$type`` (the SDK always writes it)."""

    #: the ``$type`` without its assembly, as events name the measurement's source type
    TYPE_NAME: ClassVar[str] = "CFX.Structures.Measurement"

    unique_identifier: str | None = None
    measurement_name: str | None = None
    time_recorded: str | None = None
    sequence: int | None = None
    #: the TestResult name, or its number
    result: str | int | None = None
    crds: str | None = field(default=None, name="CRDs")


class NumericMeasurement(Measurement, tag="CFX.Structures.NumericMeasurement, CFX"):
    TYPE_NAME: ClassVar[str] = "CFX.Structures.NumericMeasurement"
    measured_value: NumericValue | None = None


class BooleanMeasurement(Measurement, tag="CFX.Structures.BooleanMeasurement, CFX"):
    TYPE_NAME: ClassVar[str] = "CFX.Structures.BooleanMeasurement"
    value: bool | None = None
    expected_value: bool | None = None


class TextMeasurement(Measurement, tag="CFX.Structures.TextMeasurement, CFX"):
    TYPE_NAME: ClassVar[str] = "CFX.Structures.TextMeasurement"
    value: str | None = None
    expected_value: str | None = None


class OtherMeasurement(Measurement):
    """A measurement of a kind the SDK does not define (a vendor subclass, or no ``$type`` and no telling
    property). Never decoded from the wire: the strict decode refuses it and the lenient path
    (`pywats_cfx.mapping`) builds it, keeping the properties the base Measurement does not name."""

    #: the ``$type`` without its assembly, None when the sender gave none
    type_name: str | None = None
    properties: dict[str, Any] = {}


AnyMeasurement = NumericMeasurement | BooleanMeasurement | TextMeasurement
#: the measurement kinds the SDK defines, told apart by ``$type``
MEASUREMENT_KINDS: tuple[type[Measurement], ...] = (NumericMeasurement, BooleanMeasurement, TextMeasurement)


class Symptom(_CFX):
    unique_identifier: str | None = None
    symptom_code: str | None = None
    symptom_category: str | None = None
    description: str | None = None
    comments: str | None = None
    status: str | None = None
    priority: int | None = None
    components_of_interest: list[ComponentDesignator | str] | str | None = None
    region_of_interest: Any = None
    related_measurements: list[AnyMeasurement] | None = None


class Defect(_CFX):
    unique_identifier: str | None = None
    defect_code: str | None = None
    defect_category: str | None = None
    description: str | None = None
    comments: str | None = None
    component_of_interest: ComponentDesignator | str | None = None
    region_of_interest: Any = None
    defect_images: list[Any] | None = None
    priority: int | None = None
    confidence_level: float | None = None
    related_measurements: list[AnyMeasurement] | None = None
    related_symptoms: list[Symptom] | None = None
    verification: str | None = None
    verification_detail: str | None = None


class TestCondition(_CFX):
    """An EnvironmentalCondition (Temperature, Humidity, ...): its kind is the ``$type``'s short name."""

    type: str | None = field(default=None, name="$type")
    kind: str | None = None
    mean_value: float | None = None
    median_value: float | None = None
    min_value: float | None = None
    max_value: float | None = None
    start_time: str | None = None
    end_time: str | None = None


# --------------------------------------------------------------------------- test & inspection


class Test(_CFX):
    unique_identifier: str | None = None
    test_name: str | None = None
    test_start_time: str | None = None
    test_end_time: str | None = None
    test_conditions: list[TestCondition] | None = None
    test_procedure: str | None = None
    comments: str | None = None
    result: str | int | None = None
    error: str | None = None
    symptoms_found: list[Symptom] | None = None
    defects_found: list[Defect] | None = None
    measurements: list[AnyMeasurement] | None = None
    verification: str | None = None


class Inspection(_CFX):
    unique_identifier: str | None = None
    inspection_name: str | None = None
    inspection_start_time: str | None = None
    inspection_end_time: str | None = None
    test_procedure: str | None = None
    comments: str | None = None
    result: str | int | None = None
    verification: str | None = None
    verification_detail: str | None = None
    error: str | None = None
    defects_found: list[Defect] | None = None
    symptoms: list[Symptom] | None = None
    measurements: list[AnyMeasurement] | None = None
    ref_no: int | None = None
    test_conditions: list[TestCondition] | None = None


class TestedUnit(_CFX):
    unit_identifier: str | None = None
    unit_position_number: int | None = None
    overall_result: str | int | None = None
    tests: list[Test] | None = None
    part_number: str | None = None
    revision: str | None = None


class InspectedUnit(_CFX):
    unit_identifier: str | None = None
    unit_position_number: int | None = None
    overall_result: str | int | None = None
    inspections: list[Inspection] | None = None
    verification: str | None = None
    total_inspection_count: int | None = None
    part_number: str | None = None
    revision: str | None = None


class InspectedPanel(_CFX):
    unit_identifier: str | None = None
    overall_result: str | int | None = None
    inspections: list[Inspection] | None = None
    verification: str | None = None
    total_inspection_count: int | None = None
    stretch: Any = None
    recognized_stroke_direction: Any = None
    fiducials: Any = None
    pcb_variant: str | None = field(default=None, name="PCBVariant")
    part_number: str | None = None
    revision: str | None = None


class UnitsTested(_CFX):
    type: str | None = field(default=None, name="$type")
    transaction_id: str | None = field(default=None, name="TransactionId")
    test_method: str | None = None
    tester: Operator | None = None
    recipe_name: str | None = None
    recipe_revision: str | None = None
    #: passed on as sent (key spelling fixed)
    sampling_information: dict[str, Any] | None = None
    tested_units: list[TestedUnit] | None = None
    lane: int | None = None
    stage: Stage | str | None = None


class UnitsInspected(_CFX):
    type: str | None = field(default=None, name="$type")
    transaction_id: str | None = field(default=None, name="TransactionId")
    inspection_method: str | None = None
    sampling_information: dict[str, Any] | None = None
    inspector: Operator | None = None
    recipe_name: str | None = None
    recipe_revision: str | None = None
    inspected_units: list[InspectedUnit] | None = None
    inspected_panel: InspectedPanel | None = None
    lane: int | None = None
    stage: Stage | str | None = None


# --------------------------------------------------------------------------- production


class WorkOrderIdentifier(_CFX):
    work_order_id: str | None = None
    batch: str | None = None


class PerformanceImpact(_CFX):
    cause: str | None = None


class WorkStarted(_CFX):
    type: str | None = field(default=None, name="$type")
    primary_identifier: str | None = None
    hermes_identifier: str | None = None
    transaction_id: str | None = field(default=None, name="TransactionID")
    lane: int | None = None
    unit_count: int | None = None
    units: list[UnitPosition] | None = None
    recipe_name: str | None = None
    revision: str | None = None
    relevant_surface: str | None = None
    work_order_identifier: WorkOrderIdentifier | None = None


class WorkCompleted(_CFX):
    type: str | None = field(default=None, name="$type")
    transaction_id: str | None = field(default=None, name="TransactionID")
    result: str | None = None
    primary_identifier: str | None = None
    hermes_identifier: str | None = None
    unit_count: int | None = None
    units: list[UnitPosition] | None = None
    performance_impacts: list[PerformanceImpact] | None = None
    lane: int | None = None
    stage: Stage | str | None = None


class UnitsDisqualified(_CFX):
    type: str | None = field(default=None, name="$type")
    transaction_id: str | None = field(default=None, name="TransactionID")
    primary_identifier: str | None = None
    hermes_identifier: str | None = None
    reason: str | None = None
    comments: str | None = None
    unit_count: int | None = None
    units: list[UnitPosition] | None = None


class UnitsMoved(_CFX):
    """UnitsArrived and UnitsDeparted (the same properties)."""

    type: str | None = field(default=None, name="$type")
    transaction_id: str | None = field(default=None, name="TransactionID")
    primary_identifier: str | None = None
    hermes_identifier: str | None = None
    unit_count: int | None = None
    units: list[UnitPosition] | None = None
    lane: int | None = None


# --------------------------------------------------------------------------- materials


class MaterialPackage(_CFX):
    unique_identifier: str | None = None
    internal_part_number: str | None = None
    internal_package_name: Any = None
    quantity: float | None = None
    leading_material_package: Any = None
    batch_id: str | None = field(default=None, name="BatchId")
    batch_material_package: Any = None
    grey_zone: Any = None
    vendor: str | None = None


class MaterialCarrier(_CFX):
    """A MaterialCarrier with the properties of the SMD feeders the SDK examples use."""

    type: str | None = field(default=None, name="$type")
    unique_identifier: str | None = None
    name: str | None = None
    parent_carrier: Any = None
    base_name: Any = None
    base_unique_identifier: Any = None
    lane_number: Any = None
    tape_pitch: Any = None
    tape_width: Any = None


class MaterialLocation(_CFX):
    """A MaterialLocation, also read as the MaterialCarrierLocation of an InstalledMaterial."""

    resource_location: Any = None
    location_identifier: str | None = None
    location_name: str | None = None
    material_package: MaterialPackage | None = None
    carrier_information: MaterialCarrier | None = None


class InstalledComponent(_CFX):
    reference_designator: str | None = None
    part_number: str | None = None
    installed_unit_identifier: str | None = None
    installation_time: Any = None
    stage: Any = None
    electrical_test: Any = None
    tests: Any = None


class InstalledMaterial(_CFX):
    unit_identifier: str | None = None
    unit_position_number: int | None = None
    quantity_installed: float | None = None
    quantity_non_installed: float | None = None
    material: MaterialPackage | None = None
    carrier_location: MaterialLocation | None = None
    installed_components: list[InstalledComponent] | None = None
    non_installed_components: Any = None
    reference_part_number: str | None = None


class MaterialsInstalled(_CFX):
    type: str | None = field(default=None, name="$type")
    transaction_id: str | None = field(default=None, name="TransactionId")
    installed_materials: list[InstalledMaterial] | None = None


class MaterialsLoaded(_CFX):
    type: str | None = field(default=None, name="$type")
    materials: list[MaterialLocation] | None = None


class MaterialsUnloaded(_CFX):
    type: str | None = field(default=None, name="$type")
    material_package_identifiers: list[str] | None = None


# --------------------------------------------------------------------------- resource performance


class Fault(_CFX):
    """The base Fault. Properties no event field names travel in the event's ``details`` when sent, so
    they are `UNSET` (absent) by default; a Fault subclass with more properties takes the lenient path."""

    type: str | None = field(default=None, name="$type")
    transaction_id: str | None = field(default=None, name="TransactionID")
    cause: str | None = None
    severity: str | None = None
    fault_code: str | None = None
    fault_occurrence_id: str | None = field(default=None, name="FaultOccurrenceId")
    lane: int | None = None
    stage: Stage | str | None = None
    description: str | None = None
    occurred_at: str | None = None
    side_location: Any | UnsetType = UNSET
    access_type: Any | UnsetType = UNSET
    description_translations: Any | UnsetType = UNSET
    due_date_time: Any | UnsetType = UNSET


#: Fault properties that travel in ``details`` (wire name, attribute)
FAULT_DETAILS = (
    ("SideLocation", "side_location"),
    ("AccessType", "access_type"),
    ("DescriptionTranslations", "description_translations"),
    ("DueDateTime", "due_date_time"),
)


class FaultOccurred(_CFX):
    type: str | None = field(default=None, name="$type")
    fault: Fault | None = None


class FaultCleared(_CFX):
    type: str | None = field(default=None, name="$type")
    fault_occurrence_id: str | None = field(default=None, name="FaultOccurrenceId")
    operator: Operator | None = None


FaultAcknowledged = FaultCleared


class SubclassedFault(Fault):
    """A Fault subclass (``SMTPlacementFault``, a vendor's own) with properties the base Fault does not
    name. Never decoded from the wire: the strict decode refuses it and the lenient path
    (`pywats_cfx.mapping`) builds it; those properties travel in the event's ``details`` as sent."""

    other_properties: dict[str, Any] = {}


class StationStateChanged(_CFX):
    type: str | None = field(default=None, name="$type")
    #: a SEMI E10/E58 code as a number or text, or the state's name
    old_state: int | str | None = None
    old_state_duration: str | None = None
    new_state: int | str | None = None
    related_fault: Fault | None = None


#: Heartbeat, EndpointConnected, EndpointShuttingDown: the event carries the body as sent, so it stays a dict
EndpointBody = dict[str, Any]


def _wire_names() -> set[str]:
    names: set[str] = set()
    for value in list(globals().values()):
        if isinstance(value, type) and issubclass(value, msgspec.Struct):
            names.update(f.encode_name for f in msgspec.structs.fields(value))
    return names


# the parser's table of canonical spellings follows the structs, so the two cannot drift
register_names(_wire_names())
