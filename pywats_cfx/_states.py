"""SEMI E10/E58 ResourceState codes (CFX `ResourceState`) and their mapping to the small `AssetState` set.

The mapping is by thousands digit, as E10 defines it: 1xxx productive, 2xxx standby, 3xxx engineering,
4xxx scheduled downtime, 5xxx unscheduled downtime, 6xxx non-scheduled. Vendor sub-codes (e.g. 3312) follow
the same rule; anything outside 1000-6999 is `unknown`. The exact code always travels beside the state.
"""

from __future__ import annotations

from pywats_events.payloads import AssetState

__all__ = ["STATE_CODES_TO_NAMES", "STATE_NAMES_TO_CODES", "asset_state", "state_name"]

STATE_CODES_TO_NAMES: dict[int, str] = {
    1000: "PRD",
    1100: "PRD_RegularWork",
    1200: "PRD_WorkForThirdParties",
    1300: "PRD_Rework",
    1400: "PRD_Engineering",
    2000: "SBY",
    2100: "SBY_NoOperator",
    2200: "SBY_NoProduct",
    2201: "SBY_NoProductBlocked",
    2202: "SBY_NoProductStarved",
    2300: "SBY_NoSupportTool",
    2400: "SBY_AssociatedClusterModuleDown",
    2500: "SBY_NoHost",
    3000: "ENG",
    3100: "ENG_ProcessExperiments",
    3200: "ENG_EquipmentExperiments",
    4000: "SDT",
    4100: "SDT_UserMaintenanceDelay",
    4200: "SDT_SuppliedMaintenanceDelay",
    4300: "SDT_PreventiveMaintenance",
    4400: "SDT_ChangeOfConsumables",
    4500: "SDT_Setup",
    4600: "SDT_ProductionTest",
    4700: "SDT_FacilitiesRelated",
    5000: "USD",
    5100: "USD_UserMaintentanceDelay",
    5200: "USD_SuppliedMaintenanceDelay",
    5300: "USD_Repair",
    5400: "USD_OutOfSpecInputMaterial",
    5500: "USD_ChangeOfConsumables",
    5600: "USD_FacilitiesRelated",
    6000: "NST",
    6100: "NST_UnworkedShifts",
    6200: "NST_EquipmentInstallation",
    6300: "NST_EquipmentModifications",
    6400: "NST_OfflineTraining",
    6500: "NST_ShutdownAndStartup",
}

STATE_NAMES_TO_CODES: dict[str, int] = {name.lower(): code for code, name in STATE_CODES_TO_NAMES.items()}

_BY_CLASS: dict[int, AssetState] = {
    1: AssetState.PRODUCTIVE,
    2: AssetState.STANDBY,
    3: AssetState.ENGINEERING,
    4: AssetState.SCHEDULED_DOWNTIME,
    5: AssetState.UNSCHEDULED_DOWNTIME,
    6: AssetState.NON_SCHEDULED,
}


def asset_state(code: int | None) -> AssetState:
    """The documented state for a SEMI code (``5500`` → ``unscheduled_downtime``)."""
    if code is None or not 1000 <= code <= 6999:
        return AssetState.UNKNOWN
    return _BY_CLASS.get(code // 1000, AssetState.UNKNOWN)


def state_name(code: int | None) -> str | None:
    """The CFX enum member name (``5500`` → ``"USD_ChangeOfConsumables"``), None for vendor codes."""
    return STATE_CODES_TO_NAMES.get(code) if code is not None else None
