"""Errors a user can act on. Each message says what happened, where, and how to fix it."""

from __future__ import annotations


class EngineError(Exception):
    """Base of every error the engine reports to a user without a traceback."""


class SpecError(EngineError):
    """The job file is invalid: the message names the key path and what is allowed."""


class InputError(EngineError):
    """An input path or shard cannot be used (missing, empty, wrong schema, corrupt)."""


class OutputError(EngineError):
    """The output path cannot be written (missing parent, under a file, no permission): names it and the fix."""


class StorageError(EngineError, OSError):
    """Storage failed for an object even after the client's retries; names the object.

    An `OSError`, so the scheduler retries the unit a few more times before reporting it.
    """


class ConservationError(EngineError):
    """Documents in != kept + dropped + duplicates: a bug, never ignored."""


class RunFailed(EngineError):
    """Some units failed; the others finished. Carries the failed shards and their errors."""

    def __init__(self, failures: dict[str, str], *, consequence: str | None = None) -> None:
        self.failures = failures
        consequence = consequence or "every other shard finished and is reusable by the next run"
        # Engine errors name their shard already; the path is added only to messages that do not.
        lines = "\n".join(
            f"  {error}" if path in error else f"  {path}: {error}" for path, error in sorted(failures.items())
        )
        msg = f"{len(failures)} shard(s) failed; {consequence}:\n{lines}"
        super().__init__(msg)
