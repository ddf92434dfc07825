"""The engine's version, recorded in markers, stats and resolved jobs (a leaf module: imports nothing)."""

from __future__ import annotations

__version__ = "0.1.0"
