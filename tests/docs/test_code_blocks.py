"""Every code block of README.md, docs/ and the sample plugins' READMEs runs, or says why it does not, so
the documentation cannot rot.

- ```python blocks run in a subprocess (the project's interpreter, an empty working directory); exit 0.
- ```console blocks are shell transcripts: ``$ command`` lines (``\\`` continues a command) run with bash in
  one empty directory per document, in the order of the document, with the project's scripts first on PATH;
  each must exit 0. The lines after a command are output the command must print, in that order (other
  lines may come between them); ``...`` in a line matches anything, and a line of ``...`` alone is only
  there for readers.
- ```toml blocks are listener configurations: they must load (`load_settings`) without an error.
- Any other block needs a marker on the line before it: ``<!-- not run: why -->``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from pywats_events.config import load_settings

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").rglob("*.md")),
    *sorted((ROOT / "samples").glob("*/README.md")),
]
RUNNABLE = ("python", "console", "toml")

_FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
_NOT_RUN = re.compile(r"^<!--\s*not run:\s*(.*?)\s*-->$")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    language: str
    text: str
    #: why it is not run (from its marker), else None
    not_run: str | None

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a markdown file, each with the marker on the line before it."""
    found: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    previous = ""
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if fence is None:
            if lines[i].strip():
                previous = lines[i].strip()
            i += 1
            continue
        start, body = i, []
        i += 1
        while i < len(lines) and not _FENCE.match(lines[i]):
            body.append(lines[i])
            i += 1
        marker = _NOT_RUN.match(previous)
        found.append(
            Block(
                path, start + 1, fence.group(2), "\n".join(body) + "\n", marker.group(1) if marker else None
            )
        )
        previous = ""
        i += 1
    return found


ALL = [b for path in DOCUMENTS for b in blocks(path)]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYWATS_EVENTS_", "WATS_", "CFX_AMQP"))}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["COLUMNS"] = "120"
    return env


def test_every_block_runs_or_says_why_not() -> None:
    assert ALL, "no code blocks found"
    unaccounted = [b.where for b in ALL if b.language not in RUNNABLE and b.not_run is None]
    assert unaccounted == [], "add <!-- not run: why --> before these blocks, or make them runnable"
    no_reason = [b.where for b in ALL if b.not_run == ""]
    assert no_reason == [], "a not-run marker must say why"


@pytest.mark.parametrize(
    "block", [b for b in ALL if b.language == "python" and b.not_run is None], ids=lambda b: b.where
)
def test_python_block_runs(block: Block, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", block.text],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"{block.where}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"


@pytest.mark.parametrize(
    "block", [b for b in ALL if b.language == "toml" and b.not_run is None], ids=lambda b: b.where
)
def test_toml_block_is_a_valid_configuration(block: Block, tmp_path: Path) -> None:
    config = tmp_path / "listener.toml"
    config.write_text(block.text, encoding="utf-8")
    load_settings(config, environ={})


def transcript(block: Block) -> list[tuple[str, list[str]]]:
    """(command, expected output lines) of a console block."""
    steps: list[tuple[str, list[str]]] = []
    lines = iter(block.text.splitlines())
    for line in lines:
        if line.startswith("$ "):
            command = line[2:]
            while command.endswith("\\"):
                command = command[:-1] + "\n" + next(lines)
            steps.append((command, []))
        elif line.strip() and line.strip() != "...":
            assert steps, f"{block.where}: output before the first $ command"
            steps[-1][1].append(line.rstrip())
    assert steps, f"{block.where}: a console block without a $ command"
    return steps


def _matches(expected: str, line: str) -> bool:
    pattern = ".*".join(re.escape(part) for part in expected.split("..."))
    return re.fullmatch(pattern, line.rstrip()) is not None


def _missing(expected: list[str], output: str) -> list[str]:
    """The expected lines not found in `output`, in order."""
    lines = iter(output.splitlines())
    missing = []
    for want in expected:
        if not any(_matches(want, line) for line in lines):
            missing.append(want)
            break
    return missing


CONSOLE_DOCUMENTS = sorted({b.path for b in ALL if b.language == "console" and b.not_run is None})


@pytest.mark.parametrize("path", CONSOLE_DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
@pytest.mark.timeout(600)
def test_console_transcripts_run(path: Path, tmp_path: Path) -> None:
    for block in blocks(path):
        if block.language != "console" or block.not_run is not None:
            continue
        for command, expected in transcript(block):
            proc = subprocess.run(
                ["bash", "-c", command],
                cwd=tmp_path,
                env=_env(),
                capture_output=True,
                text=True,
                timeout=300,
            )
            output = proc.stdout + proc.stderr
            assert proc.returncode == 0, (
                f"{block.where}: $ {command} exited {proc.returncode}:\n{output[-3000:]}"
            )
            assert _missing(expected, proc.stdout + "\n" + proc.stderr) == [], (
                f"{block.where}: $ {command} did not print {expected}:\n{output[-3000:]}"
            )


def test_transcripts_are_checked_for_their_output() -> None:
    block = Block(ROOT / "README.md", 1, "console", "$ echo a \\\nb\nfirst ...\n...\nlast\n", None)
    assert transcript(block) == [("echo a \nb", ["first ...", "last"])]
    assert _missing(["first ...", "last"], "noise\nfirst line\nmore\nlast\n") == []
    assert _missing(["last", "first ..."], "first line\nlast\n") == ["first ..."]
