"""Helpers shared by the CFX codec tests (importable as `cfx_helpers`)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from pywats_cfx.samples import load_sample

REPO_ROOT = Path(__file__).resolve().parents[2]
#: the SDK examples, kept with the tests (see corpus/README.md)
CORPUS_DIR = Path(__file__).resolve().parent / "corpus"

#: the published SDK examples that are not valid JSON (listed in the corpus README)
INVALID_CORPUS_FILES = frozenset(
    {
        "cfx-sdk__CFX.Production.Assembly.MaterialsInstalled.json",
        "cfx-sdk__CFX.Production.GetUnitInfoRequest.json",
        "cfx-sdk__CFX.Production.LocalRecipeChanged.json",
        "cfx-sdk__CFX.Production.RecipeActivated.json",
        "cfx-sdk__CFX.Production.WorkOrderActionExecuted.json",
        "cfx-sdk__CFX.Production.Processing.UnitsProcessed__ex7-example-7-routetoolparameters-data-for-each-pcb-se.json",
        "cfx-sdk__CFX.Production.Assembly.PressInsertion.ConditionCompleted.json",
        "cfx-sdk__CFX.Production.Assembly.PressInsertion.GetConditionPermissionRequest.json",
        "cfx-sdk__CFX.ResourcePerformance.EnergyConsumed.json",
        "cfx-sdk__CFX.ResourcePerformance.EnergyConsumptionResponse.json",
    }
)


def corpus_message_name(path: Path) -> str | None:
    """``cfx-sdk__<MessageName>[__exN-...].json`` → MessageName (None for the full-envelope example)."""
    stem = path.name[len("cfx-sdk__") : -len(".json")]
    name = stem.split("__", 1)[0]
    return None if name == "CFXEnvelope" else name


def corpus_files() -> list[Path]:
    messages = CORPUS_DIR / "messages"
    return sorted(messages.glob("*.json")) if messages.is_dir() else []


def sample_body(name: str) -> dict:
    """The MessageBody of a bundled sample."""
    return json.loads(load_sample(name))["MessageBody"]


def gz(data: bytes) -> bytes:
    return gzip.compress(data)
