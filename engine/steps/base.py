"""The step interface: filters, transforms and annotators, and the registry of step types.

Every step is a frozen pydantic model: its fields are its parameters (validated from the job's YAML),
calling it is its behaviour. Steps are pure: no I/O, no state kept between calls, no knowledge of Ray.
The runner only calls `apply`, which every kind of step implements:

- `Filter.__call__(batch) -> Verdict`: keeps or drops rows, never changes them.
- `Transform.__call__(batch) -> (batch, Verdict)`: rewrites `text` (same rows, same order) and may drop.
- `Annotator.__call__(batch) -> (batch, Verdict)`: adds columns (e.g. `language`) and may drop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.batch import Verdict
from engine.errors import SpecError


@dataclass(frozen=True)
class Decides:
    """A parameter that only turns measured values into keep/drop (a threshold, a list of accepted values).

    `scores` are the scores it bounds: `what-if` re-decides a change from them, the report draws the value on
    their histograms. A parameter that decides without bounding a score (a language list, a flag) leaves it empty.
    """

    scores: tuple[str, ...] = ()


@dataclass(frozen=True)
class Measures:
    """A parameter that changes what the step measures (word lists, line lengths, tokenisation, the model).

    `why` completes "the stored scores cannot answer a change of this parameter: it ...". `what-if` refuses such a
    change with that reason: only a rerun measures again.
    """

    why: str


Role = Decides | Measures
UNLABELLED = ("type", "name")


class Step(BaseModel):
    """Base of every step. `type` is the registry key; `name` (optional) overrides it in reason codes.

    Every registered step declares each of its parameters in `parameters` as `Decides` or `Measures`
    (`register` refuses a step that leaves one out): `what-if` answers only changes of deciding parameters.
    """

    # Defaults are validated like given values (`3` for a float becomes `3.0`), so a job and its resolved form
    # (defaults written out) dump, and hash, alike.
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    type: str
    name: str | None = Field(
        None,
        description="Label used in reason codes and stats; defaults to `type`. Set it to run a step twice.",
    )

    # Kind of step, for documentation and `validate` output.
    kind: ClassVar[str] = "step"
    # Behaviour version, part of every unit's reuse key: bump it when a change to the step's code changes what
    # it decides or writes (a fix), and the next run redoes every shard. A new behaviour a job must opt into gets
    # a new `type` instead (STYLE.md). None: the engine's version stands in (any new release redoes the shards).
    version: ClassVar[int | None] = None
    # Every parameter (field other than `type` and `name`) -> what it does to the verdict.
    parameters: ClassVar[Mapping[str, Role]] = {}
    # Whether the step changes `text`. A dedup job without staged text (`dedup.stage_text: false`) reruns exactly
    # these steps, in order, on the documents removal keeps: their new text must follow from `text` (and `id`)
    # and their parameters alone, as a pure function of the document (docs/dedup-design.md, 6.2).
    rewrites_text: ClassVar[bool] = False

    @property
    def label(self) -> str:
        """The prefix of this step's reason codes: `name` if given, else `type`."""
        return self.name or self.type

    def apply(self, batch: pa.Table) -> tuple[pa.Table, Verdict]:
        """Run the step on a batch: the (possibly rewritten or annotated) batch and the verdict."""
        raise NotImplementedError

    def assets(self) -> dict[str, str]:
        """The files this step reads (name -> path or fsspec URL): models, blocklists, word lists.

        A unit's reuse key holds the content identity of each (ETag, or size and SHA-256), so a file replaced at
        the same path redoes the shards. An asset named like one of the step's parameters stands for it in the
        key: moving a file without changing its bytes redoes nothing.
        """
        return {}

    def output_partition(self) -> str | None:
        """Column by which this step asks kept output to be partitioned (`kept/<col>=<value>/`), if any."""
        return None

    def check(self) -> None:
        """Fail early (at `validate`) if the step cannot run here: a missing model file, say.

        Raises:
            SpecError: naming the parameter and the fix.
        """

    def decide(self, measured: Mapping[str, np.ndarray]) -> Verdict:
        """The verdict from already measured values (as this step returned them, by name) and this step's parameters.

        `measured` holds the step's scores (float, NaN where not measured) and labels (object arrays, e.g.
        `language`); a step whose decision depends on the other documents of its batch (`batch_ranking`) is given
        one batch at a time, with the documents' `id` too. Lets `what-if` re-try deciding parameters from a run's
        score sidecar without re-reading text; steps that can implement it do, the others raise
        NotImplementedError.
        """
        msg = f"step {self.type!r} cannot re-decide from stored scores"
        raise NotImplementedError(msg)

    def can_decide(self) -> bool:
        """Whether the step re-decides from stored values (it overrides `decide`)."""
        return type(self).decide is not Step.decide

    def batch_ranking(self) -> tuple[str, float] | None:
        """(score, fraction) when the step keeps the best `fraction` of each batch by `score`, else None.

        Such a step's verdict on a document depends on the other documents of its batch.
        """
        return None

    def redecide_refusal(self, measured_by: Step) -> str | None:
        """Why this step cannot re-decide from what `measured_by` (the run's step) measured; None if it can.

        The default: the step implements `decide` and every parameter that differs is declared `Decides`.
        Steps whose deciding parameters also choose what is measured (n-gram sizes) add their own conditions.
        """
        if not self.can_decide():
            return f"step {self.type!r} does not re-decide from stored scores (it has no `decide`)"
        for param in type(self).model_fields:
            if param in UNLABELLED or getattr(self, param) == getattr(measured_by, param):
                continue
            role = type(self).parameters.get(param)
            if not isinstance(role, Decides):
                why = role.why if isinstance(role, Measures) else "is not declared as a deciding parameter"
                return f"{self.type}.{param} {why}"
        return None

    def thresholds(self) -> dict[str, list[tuple[str, float]]]:
        """Per score, the deciding parameters that bound it and their values (None, i.e. off, left out)."""
        found: dict[str, list[tuple[str, float]]] = {}
        for param, role in type(self).parameters.items():
            value = getattr(self, param)
            if not isinstance(role, Decides) or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            for score in role.scores:
                found.setdefault(score, []).append((param, float(value)))
        return found


class Filter(Step):
    """A step that keeps or drops rows and never changes them."""

    kind: ClassVar[str] = "filter"

    def __call__(self, batch: pa.Table) -> Verdict:
        raise NotImplementedError

    def apply(self, batch: pa.Table) -> tuple[pa.Table, Verdict]:
        return batch, self(batch)


class Transform(Step):
    """A step that rewrites `text` (same rows in the same order) and may drop rows."""

    kind: ClassVar[str] = "transform"
    rewrites_text: ClassVar[bool] = True

    def __call__(self, batch: pa.Table) -> tuple[pa.Table, Verdict]:
        raise NotImplementedError

    def apply(self, batch: pa.Table) -> tuple[pa.Table, Verdict]:
        return self(batch)


class Annotator(Step):
    """A step that adds columns (same rows in the same order) and may drop rows."""

    kind: ClassVar[str] = "annotator"

    def __call__(self, batch: pa.Table) -> tuple[pa.Table, Verdict]:
        raise NotImplementedError

    def apply(self, batch: pa.Table) -> tuple[pa.Table, Verdict]:
        return self(batch)


_REGISTRY: dict[str, type[Step]] = {}

StepType = TypeVar("StepType", bound=type[Step])


def register(cls: StepType) -> StepType:
    """Class decorator: make a step available to job files under its `type` literal."""
    key = cls.__pydantic_fields__["type"].default
    if not isinstance(key, str) or not key:
        msg = f"{cls.__name__} must declare `type: Literal[...] = '<name>'` to be registered"
        raise TypeError(msg)
    fields = set(cls.__pydantic_fields__) - set(UNLABELLED)
    undeclared, unknown = sorted(fields - set(cls.parameters)), sorted(set(cls.parameters) - fields)
    if undeclared or unknown:
        msg = (
            f"{cls.__name__} ({key}) must declare every parameter in `parameters` as Decides(...) or Measures(...); "
            f"undeclared: {', '.join(undeclared) or '(none)'}; "
            f"declared but not a field: {', '.join(unknown) or '(none)'}"
        )
        raise TypeError(msg)
    if key in _REGISTRY:
        msg = f"step type {key!r} is registered twice ({_REGISTRY[key].__name__} and {cls.__name__})"
        raise ValueError(msg)
    _REGISTRY[key] = cls
    return cls


def known_step_types() -> list[str]:
    """Sorted names of every registered step type."""
    return sorted(_REGISTRY)


def step_class(type_name: str) -> type[Step]:
    """The class registered under `type_name`.

    Raises:
        SpecError: for an unknown name, listing the known ones.
    """
    try:
        return _REGISTRY[type_name]
    except KeyError:
        known = ", ".join(known_step_types())
        msg = f"unknown step type {type_name!r}; known step types: {known}"
        raise SpecError(msg) from None


def format_validation_error(error: ValidationError, location: str, *, allowed: str = "") -> str:
    """One line per problem, each naming the full key path (`steps[2].min_ratio`) and what is allowed.

    `allowed` (e.g. "keys allowed for doc_length: ...") follows every unknown key.
    """
    lines = []
    for item in error.errors():
        path = location
        for part in item["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        detail = item["msg"]
        if item["type"] == "extra_forbidden":
            detail = f"unknown key ({allowed})" if allowed else "unknown key"
        lines.append(f"{path}: {detail}")
    return "\n".join(lines)


def build_step(mapping: Mapping[str, Any], location: str = "step") -> Step:
    """Build a step from its YAML mapping (`{type: ..., **parameters}`).

    Raises:
        SpecError: naming `location` (e.g. `steps[2]`), the bad key, and what is allowed.
    """
    if not isinstance(mapping, Mapping):
        msg = f"{location}: expected a mapping with a `type` key, got {type(mapping).__name__}"
        raise SpecError(msg)
    type_name = mapping.get("type")
    if not isinstance(type_name, str):
        msg = f"{location}.type: missing; every step needs `type` (known: {', '.join(known_step_types())})"
        raise SpecError(msg)
    try:
        cls = step_class(type_name)
    except SpecError as error:
        msg = f"{location}.type: {error}"
        raise SpecError(msg) from None
    try:
        return cls.model_validate(dict(mapping))
    except ValidationError as error:
        allowed = f"keys allowed for {type_name}: {', '.join(sorted(cls.model_fields))}"
        msg = format_validation_error(error, location, allowed=allowed)
        raise SpecError(msg) from None


def score_thresholds(step: Step, score_names: Sequence[str]) -> dict[str, list[tuple[str, float]]]:
    """Per score in `score_names`, the parameters of `step` that bound it and their values (for marking plots)."""
    bounds = step.thresholds()
    return {score: bounds[score] for score in score_names if score in bounds}
