"""Named step lists (`preset: fineweb` in a job) that expand to published recipes."""

from __future__ import annotations

from typing import Any

from engine.errors import SpecError

# Steps a preset lists only when their type is registered at expansion time (built by another family that may be
# absent from this build); the others must exist.
OPTIONAL_STEP_TYPES = frozenset({"language_id"})

# name -> the steps it expands to, as YAML mappings (filled by the step families that define them).
PRESETS: dict[str, list[dict[str, Any]]] = {
    # FineWeb (Penedo et al. 2024) heuristic stage in datatrove's order: URL filter, fastText language id
    # (English, score >= 0.65), Gopher repetition, Gopher quality, C4 quality without the terminal-punctuation
    # line rule, FineWeb's own quality rules. Dedup and the rest of the recipe are configured separately.
    "fineweb": [
        {"type": "url_filter"},
        {"type": "language_id", "languages": ["en"]},
        {"type": "gopher_repetition"},
        {"type": "gopher_quality"},
        {"type": "c4_quality", "filter_no_terminal_punct": False},
        {"type": "fineweb_quality"},
    ],
    # Gopher (Rae et al. 2021, appendix A.1.1): repetition then quality rules.
    "gopher": [
        {"type": "gopher_repetition"},
        {"type": "gopher_quality"},
    ],
    # C4 (Raffel et al. 2020, section 2.2): line cleaning with the terminal-punctuation rule on, then bad words.
    "c4": [
        {"type": "c4_quality", "filter_no_terminal_punct": True},
        {"type": "c4_badwords"},
    ],
}


def expand_preset(name: str) -> list[dict[str, Any]]:
    """The step mappings a preset stands for (optional steps only when their type is registered).

    Raises:
        SpecError: for an unknown preset, listing the known ones.
    """
    from engine.steps.base import known_step_types

    try:
        steps = PRESETS[name]
    except KeyError:
        known = ", ".join(sorted(PRESETS)) or "(none yet)"
        msg = f"preset: unknown preset {name!r}; known presets: {known}"
        raise SpecError(msg) from None
    registered = set(known_step_types())
    return [dict(step) for step in steps if step["type"] not in OPTIONAL_STEP_TYPES or step["type"] in registered]
