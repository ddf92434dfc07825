"""Named step lists (`preset: fineweb` in a job) that expand to published recipes."""

from __future__ import annotations

from collections.abc import Mapping
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
    # FineWeb-2 (Penedo et al. 2025; huggingface/fineweb-2's fineweb-2-pipeline.py), every document judged with its
    # own language's published settings, in that pipeline's order: language id (lid.176 shipped, labels mapped to
    # FineWeb-2 languages; a GlotLID model with `language_id: {model: ...}`), each language's score cut, Gopher
    # repetition (paragraph and line-character rules off), FineWeb quality (short-line rule off, duplicated-line
    # characters 0.1), Gopher quality (at least 2 stop words); no C4. Then the final touches: ftfy with datatrove's
    # settings, PII, table-artifact lines. Per-language dedup is not part of the preset.
    "fineweb2": [
        {"type": "language_id", "min_score": 0.0},
        {"type": "fineweb2_language"},
        {
            "type": "gopher_repetition",
            "dup_para_frac": 0,
            "dup_line_char_frac": 0,
            "dup_para_char_frac": 0,
            "per_language": {},
        },
        {"type": "fineweb_quality", "short_line_thr": None, "char_duplicates_ratio": 0.1, "per_language": {}},
        {"type": "gopher_quality", "min_stop_words": 2, "per_language": {}},
        {"type": "normalise", "fix_text": True, "ftfy": "datatrove", "form": "none"},
        {"type": "pii"},
        {"type": "symbol_lines"},
    ],
    # C4 (Raffel et al. 2020, section 2.2): line cleaning with the terminal-punctuation rule on, then bad words.
    "c4": [
        {"type": "c4_quality", "filter_no_terminal_punct": True},
        {"type": "c4_badwords"},
    ],
}


def expand_preset(name: str, overrides: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The step mappings a preset stands for (optional steps only when their type is registered).

    `overrides` maps a step type of the preset to parameters that replace the preset's for that step
    (`{gopher_quality: {min_doc_words: 30}}`), so every value of a preset can be set in the job.

    Raises:
        SpecError: for an unknown preset, listing the known ones, or an override naming a step it lacks.
    """
    from engine.steps.base import known_step_types

    try:
        steps = PRESETS[name]
    except KeyError:
        known = ", ".join(sorted(PRESETS)) or "(none yet)"
        msg = f"preset: unknown preset {name!r}; known presets: {known}"
        raise SpecError(msg) from None
    registered = set(known_step_types())
    expanded = [dict(step) for step in steps if step["type"] not in OPTIONAL_STEP_TYPES or step["type"] in registered]
    types = [step["type"] for step in expanded]
    for step_type, parameters in (overrides or {}).items():
        if step_type not in types:
            msg = f"preset.{step_type}: preset {name!r} has no such step; its steps: {', '.join(types)}"
            raise SpecError(msg)
        if not isinstance(parameters, Mapping):
            msg = f"preset.{step_type}: expected a mapping of parameters, got {type(parameters).__name__}"
            raise SpecError(msg)
        expanded[types.index(step_type)].update(parameters)
    return expanded
