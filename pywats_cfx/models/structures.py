"""CFX structures (``CFX.Structures.*``) used by the modelled messages, including the polymorphic
Measurement, EnvironmentalCondition and Fault families (chosen by ``$type``, or by shape when absent)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, SerializeAsAny

from .._values import type_name
from ._base import Bool, CFXDateTime, CFXList, CFXModel, Float, Int, Str

__all__ = [
    "AnyCondition",
    "AnyFault",
    "AnyMeasurement",
    "BooleanMeasurement",
    "ComponentDesignator",
    "Defect",
    "EnvironmentalCondition",
    "Fault",
    "Humidity",
    "InspectedPanel",
    "InspectedUnit",
    "Inspection",
    "InstalledComponent",
    "InstalledMaterial",
    "MaterialCarrier",
    "MaterialLocation",
    "MaterialPackage",
    "Measurement",
    "NumericMeasurement",
    "NumericValue",
    "Operator",
    "PerformanceImpact",
    "SamplingInformation",
    "Stage",
    "Symptom",
    "Temperature",
    "Test",
    "TestedUnit",
    "TextMeasurement",
    "UnitPosition",
    "WorkOrderIdentifier",
]


def _polymorphic(
    base: type[CFXModel],
    subclasses: dict[str, type[CFXModel]],
    guess: Callable[[dict[str, Any]], type[CFXModel]],
) -> Any:
    """A before-validator picking the subclass by ``$type`` short name, else by `guess` (shape)."""

    def pick(value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        full = type_name(value.get("$type") if "$type" in value else value.get("$Type"))
        cls = subclasses.get(full.rsplit(".", 1)[-1]) if full else None
        if cls is None:
            cls = base if full else guess(value)
        return cls.model_validate(value)

    return BeforeValidator(pick)


class Operator(CFXModel):
    OperatorIdentifier: Str = None
    ActorType: Str = None
    LastName: Str = None
    FirstName: Str = None
    LoginName: Str = None


class SamplingInformation(CFXModel):
    SamplingMethod: Str = None
    LotSize: Float = None
    SampleSize: Float = None


class Stage(CFXModel):
    StageSequence: Int = None
    StageName: Str = None
    StageType: Str = None


_Stage = Stage


class ComponentDesignator(CFXModel):
    ReferenceDesignator: Str = None
    UnitPosition: Int = None
    PartNumber: Str = None


# ---------------------------------------------------------------- measurements


class Measurement(CFXModel):
    """Base measurement; unknown subclasses (SPI, offsets, ...) decode as this with their fields kept."""

    UniqueIdentifier: Str = None
    MeasurementName: Str = None
    TimeRecorded: CFXDateTime = None
    Sequence: Int = None
    Result: Str = None
    CRDs: Str = None


class NumericValue(CFXModel):
    Value: Float = None
    ValueUnits: Str = None
    ExpectedValue: Float = None
    ExpectedValueUnits: Str = None
    MinimumAcceptableValue: Float = None
    MinimumAcceptableValueUnits: Str = None
    MaximumAcceptableValue: Float = None
    MaximumAcceptableValueUnits: Str = None


class NumericMeasurement(Measurement):
    MeasuredValue: NumericValue | None = None


class BooleanMeasurement(Measurement):
    Value: Bool = None
    ExpectedValue: Bool = None


class TextMeasurement(Measurement):
    Value: Str = None
    ExpectedValue: Str = None


def _guess_measurement(v: dict[str, Any]) -> type[CFXModel]:
    if "MeasuredValue" in v:
        return NumericMeasurement
    if isinstance(v.get("Value"), bool):
        return BooleanMeasurement
    if isinstance(v.get("Value"), str):
        return TextMeasurement
    return Measurement


AnyMeasurement = Annotated[
    SerializeAsAny[Measurement],
    _polymorphic(
        Measurement,
        {
            "NumericMeasurement": NumericMeasurement,
            "BooleanMeasurement": BooleanMeasurement,
            "TextMeasurement": TextMeasurement,
        },
        _guess_measurement,
    ),
]


# ---------------------------------------------------------------- conditions


class EnvironmentalCondition(CFXModel):
    StartTime: CFXDateTime = None
    EndTime: CFXDateTime = None
    MeanValue: Float = None
    MedianValue: Float = None
    MaxValue: Float = None
    MinValue: Float = None


class Temperature(EnvironmentalCondition):
    pass


class Humidity(EnvironmentalCondition):
    pass


AnyCondition = Annotated[
    SerializeAsAny[EnvironmentalCondition],
    _polymorphic(
        EnvironmentalCondition,
        {"Temperature": Temperature, "Humidity": Humidity},
        lambda v: EnvironmentalCondition,
    ),
]


# ---------------------------------------------------------------- symptoms, defects, tests


class Symptom(CFXModel):
    UniqueIdentifier: Str = None
    SymptomCode: Str = None
    SymptomCategory: Str = None
    Description: Str = None
    Comments: Str = None
    Status: Str = None
    ComponentsOfInterest: CFXList[ComponentDesignator] = Field(default_factory=list)
    Priority: Int = None
    RelatedMeasurements: CFXList[AnyMeasurement] = Field(default_factory=list)


class Defect(CFXModel):
    UniqueIdentifier: Str = None
    DefectCode: Str = None
    DefectCategory: Str = None
    Description: Str = None
    Comments: Str = None
    ComponentOfInterest: ComponentDesignator | None = None
    Priority: Int = None
    ConfidenceLevel: Float = None
    RelatedMeasurements: CFXList[AnyMeasurement] = Field(default_factory=list)
    RelatedSymptoms: CFXList[Symptom] = Field(default_factory=list)
    Verification: Str = None
    VerificationDetail: Str = None


class Test(CFXModel):
    __test__ = False  # not a pytest class

    UniqueIdentifier: Str = None
    TestName: Str = None
    TestStartTime: CFXDateTime = None
    TestEndTime: CFXDateTime = None
    TestConditions: CFXList[AnyCondition] = Field(default_factory=list)
    TestProcedure: Str = None
    Comments: Str = None
    Result: Str = None
    Error: Str = None
    SymptomsFound: CFXList[Symptom] = Field(default_factory=list)
    DefectsFound: CFXList[Defect] = Field(default_factory=list)
    Measurements: CFXList[AnyMeasurement] = Field(default_factory=list)


class TestedUnit(CFXModel):
    __test__ = False

    UnitIdentifier: Str = None
    UnitPositionNumber: Int = None
    OverallResult: Str = None
    Tests: CFXList[Test] = Field(default_factory=list)


class Inspection(CFXModel):
    UniqueIdentifier: Str = None
    InspectionName: Str = None
    InspectionStartTime: CFXDateTime = None
    InspectionEndTime: CFXDateTime = None
    TestProcedure: Str = None
    Comments: Str = None
    Result: Str = None
    Verification: Str = None
    VerificationDetail: Str = None
    Error: Str = None
    DefectsFound: CFXList[Defect] = Field(default_factory=list)
    Symptoms: CFXList[Symptom] = Field(default_factory=list)
    Measurements: CFXList[AnyMeasurement] = Field(default_factory=list)
    RefNo: Int = None


class InspectedUnit(CFXModel):
    UnitIdentifier: Str = None
    UnitPositionNumber: Int = None
    OverallResult: Str = None
    Inspections: CFXList[Inspection] = Field(default_factory=list)
    Verification: Str = None
    TotalInspectionCount: Int = None


class InspectedPanel(CFXModel):
    UnitIdentifier: Str = None
    OverallResult: Str = None
    Inspections: CFXList[Inspection] = Field(default_factory=list)
    Verification: Str = None
    TotalInspectionCount: Int = None
    Stretch: Float = None
    PCBVariant: Str = None


# ---------------------------------------------------------------- units, work


class UnitPosition(CFXModel):
    UnitIdentifier: Str = None
    PositionNumber: Int = None
    PositionName: Str = None
    X: Float = None
    Y: Float = None
    Z: Float = None
    Rotation: Float = None
    FlipX: Bool = None
    FlipY: Bool = None
    Status: Str = None


class WorkOrderIdentifier(CFXModel):
    WorkOrderId: Str = None
    Batch: Str = None


class PerformanceImpact(CFXModel):
    Cause: Str = None


# ---------------------------------------------------------------- materials


class MaterialPackage(CFXModel):
    UniqueIdentifier: Str = None
    InternalPartNumber: Str = None
    InternalPackageName: Str = None
    Quantity: Float = None
    BatchId: Str = None


_MaterialPackage = MaterialPackage


class MaterialCarrier(CFXModel):
    """Any carrier (tape feeder, tray, ...); subclass fields are kept as extras."""

    UniqueIdentifier: Str = None
    Name: Str = None


class MaterialLocation(CFXModel):
    LocationIdentifier: Str = None
    LocationName: Str = None
    MaterialPackage: _MaterialPackage | None = None
    CarrierInformation: MaterialCarrier | None = None


class InstalledComponent(CFXModel):
    ReferenceDesignator: Str = None
    InstalledUnitIdentifier: Str = None
    InstallationTime: CFXDateTime = None
    Stage: _Stage | None = None


class InstalledMaterial(CFXModel):
    UnitIdentifier: Str = None
    UnitPositionNumber: Int = None
    QuantityInstalled: Float = None
    QuantityNonInstalled: Float = None
    Material: MaterialPackage | None = None
    CarrierLocation: MaterialLocation | None = None
    InstalledComponents: CFXList[InstalledComponent] = Field(default_factory=list)
    ReferencePartNumber: Str = None


# ---------------------------------------------------------------- faults


class Fault(CFXModel):
    """A fault; subclass ($type SMTPlacementFault, ReflowOvenFault, ...) fields are kept as extras."""

    TransactionID: Str = None
    Cause: Str = None
    Severity: Str = None
    FaultCode: Str = None
    FaultOccurrenceId: Str = None
    Lane: Int = None
    Stage: _Stage | None = None
    SideLocation: Str = None
    AccessType: Str = None
    Description: Str = None
    DescriptionTranslations: dict[str, Any] | None = None
    OccurredAt: CFXDateTime = None
    DueDateTime: CFXDateTime = None


AnyFault = Annotated[SerializeAsAny[Fault], _polymorphic(Fault, {}, lambda v: Fault)]
