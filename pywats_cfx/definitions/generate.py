"""Generate the CFX definition table (``cfx_definitions.json``) from the CFX schema reference.

    python -m pywats_cfx.definitions.generate REFERENCE.md [--sdk CFX_SDK_CHECKOUT] [--output PATH]

The reference (a Markdown digest of the CFX SDK: one ``## FullName (class|enum, base X)`` section per type,
one ``- `Property`: `C# type` — doc`` line per property) describes the messages the project meets most and
every structure they use. The SDK defines more messages than the reference describes; ``--sdk`` reads
their names from an SDK checkout (``class X : CFXMessage``) so the conformance check knows every CFX
message name. Without ``--sdk`` the names of the committed table are kept.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["TABLE_PATH", "generate", "message_names_from_sdk", "table_from_reference", "write_table"]

#: the committed table, read by `pywats_cfx.definitions`
TABLE_PATH = Path(__file__).with_name("cfx_definitions.json")

_HEADER = re.compile(r"^## (?P<name>[\w.]+)\s+\((?P<kind>class|enum)(?:, base (?P<base>[\w.]+))?\)")
_PROPERTY = re.compile(r"^- `(?P<name>[\w$]+)`: `(?P<type>[^`]+)`(?: — (?P<doc>.*))?$")
_MEMBER = re.compile(r"^- `(?P<name>\w+)`(?: = (?P<value>-?\d+))?(?: — .*)?$")
_SUBCLASSES = re.compile(r"^- subclasses: (?P<names>.+)$")
_ADDED = re.compile(r"ADDED in CFX (\d+\.\d+)")
_NOT_IN_JSON = "WILL NOT APPEAR IN JSON DATA"
_OPTIONAL = re.compile(r"\(optional\)|^OPTIONAL\b|\bOptional:", re.IGNORECASE)
_SDK_MESSAGE = re.compile(r"namespace\s+(?P<ns>[\w.]+)|class\s+(?P<cls>\w+)\s*:\s*CFXMessage\b")


def table_from_reference(text: str) -> dict[str, Any]:
    """Messages, structures and enums described by the reference, in the table's shape."""
    messages: dict[str, Any] = {}
    structures: dict[str, Any] = {}
    enums: dict[str, Any] = {}
    current: dict[str, Any] | None = None
    for line in text.splitlines():
        header = _HEADER.match(line)
        if header:
            name, kind, base = header["name"], header["kind"], header["base"]
            if kind == "enum":
                current = enums.setdefault(name, {"members": {}})
            else:
                current = {"base": _short(base) if base and base != "CFXMessage" else None, "fields": {}}
                (messages if base == "CFXMessage" else structures)[name] = current
            continue
        if current is None:
            continue
        sub = _SUBCLASSES.match(line)
        prop = _PROPERTY.match(line)
        member = _MEMBER.match(line)
        if sub and "fields" in current:
            current["subclasses"] = [s.strip() for s in sub["names"].split(",")]
        elif prop and "fields" in current:
            doc = prop["doc"] or ""
            if _NOT_IN_JSON in doc:
                continue
            entry: dict[str, Any] = {"type": prop["type"]}
            if _OPTIONAL.search(doc):
                entry["optional"] = True
            added = _ADDED.search(doc)
            if added:
                entry["added"] = added.group(1)
            current["fields"][prop["name"]] = entry
        elif member and "members" in current:
            current["members"][member["name"]] = int(member["value"]) if member["value"] else None
    return {"messages": messages, "structures": structures, "enums": enums}


def message_names_from_sdk(sdk: Path) -> list[str]:
    """Full names of every ``CFXMessage`` subclass in a CFX SDK checkout (its ``CFX/`` folder)."""
    names: set[str] = set()
    for path in sorted((sdk / "CFX").rglob("*.cs")):
        namespace = ""
        for m in _SDK_MESSAGE.finditer(path.read_text(encoding="utf-8-sig", errors="replace")):
            if m["ns"]:
                namespace = m["ns"]
            elif namespace:
                names.add(f"{namespace}.{m['cls']}")
    return sorted(names)


def generate(reference: str, message_names: Sequence[str]) -> dict[str, Any]:
    """The whole table: the reference's definitions plus every known message name (sorted, deduplicated)."""
    table = table_from_reference(reference)
    names = sorted(set(message_names) | set(table["messages"]))
    return {"message_names": names, **table}


def write_table(table: dict[str, Any], path: Path = TABLE_PATH) -> None:
    path.write_text(json.dumps(table, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _sdk_tree(sdk: Path) -> Path:
    """The SDK checkout itself; a folder without CFX/ is refused."""
    if (sdk / "CFX").is_dir():
        return sdk
    raise SystemExit(f"{sdk} has no CFX/ folder: give a checkout of the CFX SDK")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pywats_cfx.definitions.generate", description=__doc__)
    p.add_argument("reference", type=Path, help="CFX_REFERENCE.md")
    p.add_argument("--sdk", type=Path, help="a checkout of the CFX SDK, for the names of all messages")
    p.add_argument("--output", type=Path, default=TABLE_PATH)
    args = p.parse_args(argv)
    if args.sdk is not None:
        names = message_names_from_sdk(_sdk_tree(args.sdk))
    elif args.output.exists():
        names = json.loads(args.output.read_text(encoding="utf-8"))["message_names"]
    else:
        names = []
    write_table(generate(args.reference.read_text(encoding="utf-8"), names), args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
