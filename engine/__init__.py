"""corpus-engine: clean web-scale text corpora for LLM pretraining, on Ray.

The Python API lives in `engine.api`; its most used names are re-exported here, imported on first use so that
`import engine.io.paths` (say, in a Ray worker) does not pull in every layer above it.
"""

from __future__ import annotations

from typing import Any

from engine.version import __version__

_API = ("apply_step", "build_step", "load_job", "plan_job", "run_job")


def __getattr__(name: str) -> Any:
    if name in _API:
        import engine.api

        return getattr(engine.api, name)
    msg = f"module 'engine' has no attribute {name!r}"
    raise AttributeError(msg)


__all__ = ["__version__", *_API]
