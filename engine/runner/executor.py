"""How phases run many independent tasks: serially here, or as Ray tasks (`engine.runner.ray`).

Phase code (unit runs, dedup partitions) is written against `Executor` so that it never imports Ray and
its results never depend on where or in which order tasks ran.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class Executor(Protocol):
    """Runs `fn(item)` for every item, possibly in parallel, and returns results in item order."""

    def map(self, fn: Callable[[Item], Result], items: Sequence[Item], *, label: str) -> list[Result]: ...


class SerialExecutor:
    """Runs tasks one after another in this process (tests, notebooks, debugging)."""

    def map(self, fn: Callable[[Item], Result], items: Sequence[Item], *, label: str) -> list[Result]:
        del label
        return [fn(item) for item in items]
