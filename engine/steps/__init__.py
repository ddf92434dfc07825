"""Step families. Importing this package registers every built-in step (one import line per family)."""

from __future__ import annotations

# fastText steps live beside the package (engine/langid.py, engine/quality.py); they import
# engine.steps.base, never engine.steps, so these lines create no import cycle.
import engine.langid  # noqa: F401
import engine.quality  # noqa: F401
from engine.steps import c4, fineweb, gopher, length, normalise, url  # noqa: F401
from engine.steps.base import Annotator, Filter, Step, Transform, build_step, known_step_types, register

__all__ = ["Annotator", "Filter", "Step", "Transform", "build_step", "known_step_types", "register"]
