"""Named step lists (`preset: fineweb` in a job) that expand to published recipes."""

from __future__ import annotations

from typing import Any

from engine.errors import SpecError

# name -> the steps it expands to, as YAML mappings (filled by the step families that define them).
PRESETS: dict[str, list[dict[str, Any]]] = {}


def expand_preset(name: str) -> list[dict[str, Any]]:
    """The step mappings a preset stands for.

    Raises:
        SpecError: for an unknown preset, listing the known ones.
    """
    try:
        return [dict(step) for step in PRESETS[name]]
    except KeyError:
        known = ", ".join(sorted(PRESETS)) or "(none yet)"
        msg = f"preset: unknown preset {name!r}; known presets: {known}"
        raise SpecError(msg) from None
