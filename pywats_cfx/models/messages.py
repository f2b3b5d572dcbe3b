"""CFX message bodies (``MessageBody``), one model per modelled message, plus `GenericCFXMessage`."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from ._base import CFXList, CFXModel, CFXTimeSpan, Int, ResourceStateCode, Str
from .structures import (
    AnyFault,
    InspectedPanel,
    InspectedUnit,
    InstalledMaterial,
    MaterialLocation,
    Operator,
    PerformanceImpact,
    SamplingInformation,
    TestedUnit,
    UnitPosition,
    WorkOrderIdentifier,
)

_Operator = Operator
_SamplingInformation = SamplingInformation
_InspectedPanel = InspectedPanel
_WorkOrderIdentifier = WorkOrderIdentifier

__all__ = [
    "CFXMessage",
    "EndpointConnected",
    "EndpointShuttingDown",
    "FaultAcknowledged",
    "FaultCleared",
    "FaultOccurred",
    "GenericCFXMessage",
    "Heartbeat",
    "MaterialsInstalled",
    "MaterialsLoaded",
    "MaterialsUnloaded",
    "StationStateChanged",
    "UnitsArrived",
    "UnitsDeparted",
    "UnitsDisqualified",
    "UnitsInspected",
    "UnitsTested",
    "WorkCompleted",
    "WorkStarted",
]


class CFXMessage(CFXModel):
    """Base of message bodies. `MESSAGE_NAME` is the full CFX name the model is registered under."""

    MESSAGE_NAME: ClassVar[str] = ""


class GenericCFXMessage(CFXMessage):
    """Any message without a dedicated model: every property is kept as an extra."""


class UnitsTested(CFXMessage):
    MESSAGE_NAME: ClassVar[str] = "CFX.Production.TestAndInspection.UnitsTested"
    TransactionID: Str = None
    TestMethod: Str = None
    Tester: Operator | None = None
    RecipeName: Str = None
    RecipeRevision: Str = None
    SamplingInformation: _SamplingInformation | None = None
    TestedUnits: CFXList[TestedUnit] = Field(default_factory=list)


class UnitsInspected(CFXMessage):
    MESSAGE_NAME: ClassVar[str] = "CFX.Production.TestAndInspection.UnitsInspected"
    TransactionID: Str = None
    InspectionMethod: Str = None
    SamplingInformation: _SamplingInformation | None = None
    Inspector: Operator | None = None
    RecipeName: Str = None
    RecipeRevision: Str = None
    InspectedUnits: CFXList[InspectedUnit] = Field(default_factory=list)
    InspectedPanel: _InspectedPanel | None = None


class _UnitsMessage(CFXMessage):
    PrimaryIdentifier: Str = None
    HermesIdentifier: Str = None
    UnitCount: Int = None
    Units: CFXList[UnitPosition] = Field(default_factory=list)


class WorkStarted(_UnitsMessage):
    MESSAGE_NAME: ClassVar[str] = "CFX.Production.WorkStarted"
    TransactionID: Str = None
    Lane: Int = None
    RecipeName: Str = None
    Revision: Str = None
    RelevantSurface: Str = None
    WorkOrderIdentifier: _WorkOrderIdentifier | None = None


class WorkCompleted(_UnitsMessage):
    MESSAGE_NAME: ClassVar[str] = "CFX.Production.WorkCompleted"
    TransactionID: Str = None
    Result: Str = None
    PerformanceImpacts: list[PerformanceImpact] | None = None


class UnitsDisqualified(_UnitsMessage):
    MESSAGE_NAME: ClassVar[str] = "CFX.Production.UnitsDisqualified"
    Reason: Str = None
    Comments: Str = None


class UnitsArrived(_UnitsMessage):
    MESSAGE_NAME: ClassVar[str] = "CFX.Production.UnitsArrived"
    Lane: Int = None


class UnitsDeparted(_UnitsMessage):
    MESSAGE_NAME: ClassVar[str] = "CFX.Production.UnitsDeparted"
    Lane: Int = None


class MaterialsInstalled(CFXMessage):
    MESSAGE_NAME: ClassVar[str] = "CFX.Production.Assembly.MaterialsInstalled"
    TransactionID: Str = None
    InstalledMaterials: CFXList[InstalledMaterial] = Field(default_factory=list)


class MaterialsLoaded(CFXMessage):
    MESSAGE_NAME: ClassVar[str] = "CFX.Materials.Storage.MaterialsLoaded"
    Materials: CFXList[MaterialLocation] = Field(default_factory=list)


class MaterialsUnloaded(CFXMessage):
    MESSAGE_NAME: ClassVar[str] = "CFX.Materials.Storage.MaterialsUnloaded"
    MaterialPackageIdentifiers: CFXList[str] = Field(default_factory=list)


class FaultOccurred(CFXMessage):
    MESSAGE_NAME: ClassVar[str] = "CFX.ResourcePerformance.FaultOccurred"
    Fault: AnyFault | None = None


class FaultCleared(CFXMessage):
    MESSAGE_NAME: ClassVar[str] = "CFX.ResourcePerformance.FaultCleared"
    FaultOccurrenceId: Str = None
    Operator: _Operator | None = None


class FaultAcknowledged(CFXMessage):
    MESSAGE_NAME: ClassVar[str] = "CFX.ResourcePerformance.FaultAcknowledged"
    FaultOccurrenceId: Str = None
    Operator: _Operator | None = None


class StationStateChanged(CFXMessage):
    MESSAGE_NAME: ClassVar[str] = "CFX.ResourcePerformance.StationStateChanged"
    OldState: ResourceStateCode = None
    OldStateDuration: CFXTimeSpan = None
    NewState: ResourceStateCode = None
    RelatedFault: AnyFault | None = None


class EndpointConnected(CFXMessage):
    MESSAGE_NAME: ClassVar[str] = "CFX.EndpointConnected"
    CFXHandle: Str = None
    RequestNetworkUri: Str = None
    RequestTargetAddress: Str = None


class EndpointShuttingDown(CFXMessage):
    MESSAGE_NAME: ClassVar[str] = "CFX.EndpointShuttingDown"
    CFXHandle: Str = None


class Heartbeat(CFXMessage):
    MESSAGE_NAME: ClassVar[str] = "CFX.Heartbeat"
    CFXHandle: Str = None
    HeartbeatFrequency: CFXTimeSpan = None
    ActiveFaults: list[AnyFault] | None = None
    ActiveRecipes: list[dict[str, object]] | None = None
