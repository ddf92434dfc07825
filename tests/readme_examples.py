"""README's command examples as data: the commands, the outputs it shows, and how a real output is compared.

README marks an output block with `<!-- output of: COMMAND -->` on the line before it (and a whole shell session
with `<!-- session: NAME -->`). Times, rates, job ids, addresses, paths and hashes vary between machines and runs,
so both sides are masked before comparing; everything else (counts, reasons, ratios) must be what the sample gives.
Each shown line must appear in the real output; `...` stands for lines left out, a line ending in `…` for a line
cut short (the real line must start with it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
ELISION = "..."
CUT = "…"

_MASKS = [
    (re.compile(r"raysubmit_\w+"), "<job>"),
    (re.compile(r"https?://127\.0\.0\.1:\d+"), "<address>"),
    (re.compile(r"^(running '\w+' -> )\S+"), r"\1<path>"),
    (re.compile(r"(?<=output: )\S+"), "<path>"),
    (re.compile(r"job hash [0-9a-f]+"), "job hash <hash>"),
    (re.compile(r"\b\d[\d,]*(\.\d+)? docs/s"), "<rate> docs/s"),
    (re.compile(r"\b\d+(\.\d+)?s\b"), "<seconds>"),
    (re.compile(r"ETA \S+"), "ETA <eta>"),
    # bench table rows: `<label> <docs/s> <MB/s> <dropped %>`
    (re.compile(r"^(\S.*?) [\d,]+ [\d,.]+ (\d+\.\d%)"), r"\1 <rate> <rate> \2"),
]


def mask(line: str) -> str:
    """A line with whitespace runs collapsed and the run-dependent parts replaced by placeholders."""
    text = " ".join(line.split())
    for pattern, replacement in _MASKS:
        text = pattern.sub(replacement, text)
    return text


@dataclass(frozen=True)
class Block:
    """A fenced block of README: its info string, its lines, the marker comment before it (if any), its line."""

    info: str
    lines: list[str]
    marker: str | None
    line: int


def blocks(text: str | None = None) -> list[Block]:
    lines = (text if text is not None else README.read_text(encoding="utf-8")).splitlines()
    found, i = [], 0
    while i < len(lines):
        stripped = lines[i].strip()
        if stripped.startswith("```"):
            info = stripped[3:].strip()
            previous = lines[i - 1].strip() if i else ""
            marker = previous[4:-3].strip() if previous.startswith("<!--") and previous.endswith("-->") else None
            end = i + 1
            while end < len(lines) and not lines[end].strip().startswith("```"):
                end += 1
            found.append(Block(info, lines[i + 1 : end], marker, i + 1))
            i = end + 1
        else:
            i += 1
    return found


def commands(text: str | None = None) -> list[str]:
    """Every command README shows: the lines of ```bash blocks (comments dropped) and `$ ` lines of sessions."""
    found = []
    for block in blocks(text):
        if block.info == "bash":
            joined = "\n".join(block.lines).replace("\\\n", " ")
            found += [line.split("  #")[0].strip() for line in joined.splitlines() if line.strip()]
        elif block.info == "":
            found += [line[2:].strip() for line in block.lines if line.startswith("$ ")]
    return found


def shown_output(command: str, text: str | None = None) -> list[str]:
    """The lines README shows as the output of `command` (`<!-- output of: command -->`)."""
    matches = [b for b in blocks(text) if b.marker == f"output of: {command}"]
    assert len(matches) == 1, f"README shows {len(matches)} outputs for {command!r}"
    return matches[0].lines


def session(name: str, text: str | None = None) -> dict[str, list[str]]:
    """A `<!-- session: name -->` block: each `$ command` with the lines shown after it."""
    (block,) = [b for b in blocks(text) if b.marker == f"session: {name}"]
    found: dict[str, list[str]] = {}
    current = None
    for line in block.lines:
        if line.startswith("$ "):
            current = line[2:].strip()
            found[current] = []
        elif current is not None:
            found[current].append(line)
    return found


def missing_lines(shown: list[str], actual: str) -> list[str]:
    """The README lines (masked) that the real output does not contain; [] when README shows what the run gives."""
    real = [mask(line) for line in actual.splitlines()]
    missing = []
    for line in shown:
        if line.strip() == ELISION or not line.strip():
            continue
        if line.rstrip().endswith(CUT):
            prefix = mask(line.rstrip()[: -len(CUT)])
            if not any(r.startswith(prefix) for r in real):
                missing.append(line)
        elif mask(line) not in real:
            missing.append(line)
    return missing
