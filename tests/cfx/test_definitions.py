"""The committed CFX definition table is what the generator makes of the reference."""

from __future__ import annotations

import json
import os
from pathlib import Path

from cfx_helpers import REPO_ROOT, corpus_files, corpus_message_name

from pywats_cfx.definitions import cfx_definitions
from pywats_cfx.definitions.generate import TABLE_PATH, message_names_from_sdk, table_from_reference

#: the CFX message reference the table is generated from, kept beside the SDK corpus (override: CFX_REFERENCE)
REFERENCE = Path(os.environ.get("CFX_REFERENCE", REPO_ROOT / "tests" / "cfx" / "corpus" / "CFX_REFERENCE.md"))


def test_committed_table_is_current() -> None:
    committed = json.loads(TABLE_PATH.read_text(encoding="utf-8"))
    fresh = table_from_reference(REFERENCE.read_text(encoding="utf-8"))
    for part in ("messages", "structures", "enums"):
        assert committed[part] == fresh[part], f"regenerate: python -m pywats_cfx.definitions.generate {part}"
    sdk = os.environ.get("CFX_SDK_DIR")
    if sdk:
        assert committed["message_names"] == message_names_from_sdk(Path(sdk))


def test_every_corpus_message_name_is_a_known_cfx_message() -> None:
    names = {corpus_message_name(p) for p in corpus_files()} - {None}
    assert len(names) == 179
    assert names <= cfx_definitions().message_names


def test_mapped_messages_join_the_typed_description() -> None:
    units_tested = cfx_definitions().messages["CFX.Production.TestAndInspection.UnitsTested"]
    assert units_tested.fields["TestedUnits"].type == "List<TestedUnit>"  # from the reference
    assert units_tested.fields["Lane"].type == "int"  # only in pywats_cfx.schema
