"""Layering, read from the source: every import of the three packages, wherever it is written.

The core (`pywats_events`) imports neither outer package; the CFX adapter (`pywats_cfx`) and the WATS
handlers (`handlers`) never import each other and use only the core's public names: no module and no
name starting with ``_``. Imports inside functions and under ``TYPE_CHECKING`` count as much as those at
the top of a module, as do ``importlib.import_module("...")`` calls with a literal name. The runtime
checks (tests/listener/test_core_layering.py) see what importing loads; this one sees what may load later.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = "pywats_events"
CFX = "pywats_cfx"
WATS = "handlers"
PACKAGES = (CORE, CFX, WATS)

#: package → the packages it must never import
FORBIDDEN: dict[str, tuple[str, ...]] = {CORE: (CFX, WATS), CFX: (WATS,), WATS: (CFX,)}


@dataclass(frozen=True)
class Import:
    """One imported module (and, for ``from m import a``, the name) at a line of a module."""

    module: str
    name: str | None
    line: int


def imports_of(source: str, module: str, *, is_package: bool = False) -> list[Import]:
    """Every import in `source` (the text of `module`), relative ones resolved to absolute names."""
    base = module.split(".") if is_package else module.split(".")[:-1]
    found: list[Import] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [Import(alias.name, None, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parent = base[: len(base) - node.level + 1]
                target = ".".join([*parent, node.module] if node.module else parent)
            else:
                target = node.module or ""
            found += [Import(target, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.Call) and _is_import_call(node.func) and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.append(Import(arg.value, None, node.lineno))
    return sorted(found, key=lambda i: i.line)


def _is_import_call(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in ("__import__", "import_module")
    return isinstance(func, ast.Attribute) and func.attr == "import_module"


def violations(source: str, module: str, *, is_package: bool = False) -> list[str]:
    """What `module` imports against the layering, as ``module:line: reason``."""
    package = module.split(".")[0]
    found = []
    for imp in imports_of(source, module, is_package=is_package):
        top = imp.module.split(".")[0]
        where = f"{module}:{imp.line}"
        if top in FORBIDDEN.get(package, ()):
            found.append(f"{where}: {package} imports {imp.module}")
        elif package != CORE and top == CORE:
            private = [p for p in imp.module.split(".")[1:] if p.startswith("_")]
            if private:
                found.append(f"{where}: private core module {imp.module}")
            elif imp.name is not None and imp.name.startswith("_"):
                found.append(f"{where}: private core name {imp.module}.{imp.name}")
    return list(dict.fromkeys(found))  # one line per import statement, not per imported name


def _modules() -> list[tuple[str, Path]]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found.append((".".join(parts), path))
    return found


MODULES = _modules()


def test_every_module_of_the_three_packages_is_checked() -> None:
    names = {name for name, _ in MODULES}
    assert {f"{CORE}.__init__", f"{CFX}.explorer.report", f"{WATS}.preview"} <= names
    assert len(names) > 60


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[name for name, _ in MODULES])
def test_module_keeps_the_layering(module: str, path: Path) -> None:
    is_package = path.name == "__init__.py"
    if is_package:
        module = module.removesuffix(".__init__")
    assert violations(path.read_text(encoding="utf-8"), module, is_package=is_package) == []


# ------------------------------------------------------------------ the checker itself


def test_a_lazy_import_inside_a_function_is_a_violation() -> None:
    source = "def preview():\n    from handlers.preview import preview\n    return preview\n"
    assert violations(source, "pywats_cfx.explorer.report") == [
        "pywats_cfx.explorer.report:2: pywats_cfx imports handlers.preview"
    ]


def test_an_import_under_type_checking_is_a_violation() -> None:
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pywats_cfx.codec\n"
    assert violations(source, "handlers.report") == ["handlers.report:3: handlers imports pywats_cfx.codec"]


def test_the_core_must_not_import_an_outer_package() -> None:
    source = "import importlib\nimportlib.import_module('handlers.plugin')\nfrom pywats_cfx import CFXCodec\n"
    assert violations(source, "pywats_events.plugins") == [
        "pywats_events.plugins:2: pywats_events imports handlers.plugin",
        "pywats_events.plugins:3: pywats_events imports pywats_cfx",
    ]


def test_private_core_modules_and_names_are_violations_outside_the_core() -> None:
    source = (
        "from pywats_events.transports._base import QuarantineRecord\n"
        "import pywats_events._handlers\n"
        "from pywats_events import _handlers\n"
        "from pywats_events.transports import QuarantineRecord\n"
    )
    assert violations(source, "pywats_cfx.codec") == [
        "pywats_cfx.codec:1: private core module pywats_events.transports._base",
        "pywats_cfx.codec:2: private core module pywats_events._handlers",
        "pywats_cfx.codec:3: private core name pywats_events._handlers",
    ]
    assert violations(source, "pywats_events.journal") == []  # the core's own private modules are fine


def test_relative_imports_are_resolved() -> None:
    source = "from .. import _wire\nfrom ..models import parse_envelope\nfrom . import render\n"
    assert [i.module for i in imports_of(source, "pywats_cfx.explorer.cli")] == [
        "pywats_cfx",
        "pywats_cfx.models",
        "pywats_cfx.explorer",
    ]
    assert [i.module for i in imports_of(source, "pywats_cfx.explorer", is_package=True)] == [
        "pywats_cfx",
        "pywats_cfx.models",
        "pywats_cfx.explorer",
    ]
