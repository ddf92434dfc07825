"""corpus-engine: clean web-scale text corpora for LLM pretraining, on Ray.

The Python API lives in `engine.api`; the most used names are re-exported here.
"""

from __future__ import annotations

__version__ = "0.1.0"

from engine.api import apply_step, build_step, load_job, run_job

__all__ = ["__version__", "apply_step", "build_step", "load_job", "run_job"]
