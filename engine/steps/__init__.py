"""Step families. Importing this package registers every built-in step (one import line per family)."""

from __future__ import annotations

from engine.steps import (  # noqa: F401
    c4,
    fineweb,
    gopher,
    language_id,
    length,
    normalise,
    pii,
    quality,
    symbol_lines,
    url,
)
from engine.steps.base import Annotator, Filter, Step, Transform, build_step, known_step_types, register

__all__ = ["Annotator", "Filter", "Step", "Transform", "build_step", "known_step_types", "register"]
