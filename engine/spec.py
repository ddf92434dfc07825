"""The job file: pydantic models (unknown keys rejected), YAML loading, and the phase-A config hash.

The shape is a public contract (README, "Job file"):

    name: sample
    input:  {path: URL, text_column: text, id_column: id, storage_options: {}}
    output: {path: URL, storage_options: {}}
    preset: fineweb          # optional; expands to a published list of steps, run before `steps`
    steps:  [{type: ..., ...}]
    dedup:  {type: minhash}  # optional
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, field_validator

import engine.steps  # noqa: F401  (registers the built-in steps)
from engine.dedup.config import DedupSpec
from engine.dedup.signatures import parameters_name  # what stored signatures depend on
from engine.errors import SpecError
from engine.presets import expand_preset
from engine.steps.base import Step, build_step, format_validation_error


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class InputSpec(_Strict):
    """Where the shards are and which columns hold the text and the id."""

    path: str = Field(description="fsspec URL or local path: a folder of Parquet shards or one file.")
    text_column: str = "text"
    id_column: str = Field("id", description="Derived from (shard path, row index) when the shard lacks it.")
    glob: str = Field("**/*.parquet", description="Which files under `path` are shards.")
    storage_options: dict[str, Any] = Field(default_factory=dict)
    batch_rows: int = Field(2048, ge=1, le=1_000_000, description="Rows per batch read from a row group.")
    max_text_bytes: int = Field(
        10_000_000, ge=1, description="Larger documents are dropped with reason input/too_large."
    )


class OutputSpec(_Strict):
    """Where the cleaned corpus, the rejected documents and the stats go."""

    path: str
    storage_options: dict[str, Any] = Field(default_factory=dict)
    write_rejected: bool = Field(True, description="Write dropped documents with their reason to rejected/.")
    compression: str = Field("zstd", pattern="^(zstd|snappy|gzip|lz4|none)$")
    keep_scores: bool = Field(
        False, description="Write every step's measured values per document to scores/ (for what-if and reports)."
    )


class RunSpec(_Strict):
    """How units are scheduled."""

    max_retries: int = Field(3, ge=0, le=100, description="Retries of a shard after a worker or I/O failure.")
    max_in_flight: int | None = Field(None, ge=1, description="Shards running at once; default 2 x CPUs.")
    cpus_per_task: float = Field(1.0, gt=0, le=256)


class JobSpec(_Strict):
    """A whole job, validated before anything runs."""

    name: str = "job"
    input: InputSpec
    output: OutputSpec
    preset: str | None = None
    steps: list[SerializeAsAny[Step]] = Field(default_factory=list)
    dedup: DedupSpec | None = None
    run: RunSpec = Field(default_factory=RunSpec)

    @field_validator("steps", mode="before")
    @classmethod
    def _build_steps(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        return [s if isinstance(s, Step) else build_step(s, f"steps[{i}]") for i, s in enumerate(value)]

    def phase_a_hash(self) -> str:
        """Hash of everything that decides a shard's phase-A output (not paths, names or credentials).

        A unit whose marker carries this hash and the same input fingerprint is not redone.
        """
        relevant = {
            "input": self.input.model_dump(exclude={"path", "storage_options"}),
            "steps": [s.model_dump() for s in self.steps],
            "write_rejected": self.output.write_rejected,
            "compression": self.output.compression,
            "keep_scores": self.output.keep_scores,
            "signatures": parameters_name(self.dedup) if self.dedup is not None else None,
        }
        return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]

    def resolved(self) -> dict[str, Any]:
        """The job with every default filled in and the preset expanded; credentials removed."""
        data = self.model_dump(mode="json")
        for section in ("input", "output"):
            if data[section]["storage_options"]:
                data[section]["storage_options"] = {k: "<redacted>" for k in data[section]["storage_options"]}
        return data


def parse_job(raw: Any, *, source: str = "job") -> JobSpec:
    """Validate a job mapping (already parsed from YAML).

    Raises:
        SpecError: one line per problem, each naming the key path and what is allowed.
    """
    if not isinstance(raw, dict):
        msg = f"{source}: a job file must be a YAML mapping with input, output and steps; got {type(raw).__name__}"
        raise SpecError(msg)
    raw = dict(raw)
    preset = raw.get("preset")
    if preset is not None:
        steps = raw.get("steps") or []
        if not isinstance(steps, list):
            msg = f"{source}: steps: expected a list of steps, got {type(steps).__name__}"
            raise SpecError(msg)
        raw["steps"] = expand_preset(str(preset)) + steps
    try:
        return JobSpec.model_validate(raw)
    except ValidationError as error:
        msg = f"{source}: invalid job\n{format_validation_error(error, '')}"
        raise SpecError(msg) from None
    except SpecError as error:
        msg = f"{source}: invalid job\n{error}"
        raise SpecError(msg) from None


def load_job(path: str | Path, *, output: str | None = None) -> JobSpec:
    """Read and validate a YAML job file; `output` overrides `output.path` (the CLI's --output).

    Raises:
        SpecError: the file is missing, is not valid YAML, or does not validate.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        msg = f"job file {str(path)!r} does not exist"
        raise SpecError(msg) from None
    except (OSError, UnicodeDecodeError) as error:
        msg = f"job file {str(path)!r} cannot be read: {error}"
        raise SpecError(msg) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        msg = f"{path}: invalid YAML{at}: {problem}"
        raise SpecError(msg) from None
    if output is not None and isinstance(raw, dict):
        raw = {**raw, "output": {**(raw.get("output") or {}), "path": output}}
    return parse_job(raw, source=str(path))
