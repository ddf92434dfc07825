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

import dataclasses
import hashlib
import json
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, field_validator, model_validator

import engine.steps  # noqa: F401  (registers the built-in steps)
from engine.errors import SpecError
from engine.io.parquet import WriteLayout
from engine.schema import SCORES_LAYOUT
from engine.steps.base import Step, build_step
from engine.steps.presets import expand_preset


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
    row_group_bytes: int = Field(
        WriteLayout.row_group_bytes,
        ge=1 << 16,
        le=1 << 31,
        description="Bytes of rows (uncompressed, nearly all text) buffered into one row group, however many rows "
        "the steps dropped from each batch.",
    )
    row_group_rows: int = Field(
        WriteLayout.row_group_rows, ge=1, le=1 << 26, description="Rows at which a row group ends before its bytes do."
    )
    max_open_files: int = Field(
        WriteLayout.max_open_files,
        ge=1,
        le=10_000,
        description="Files a shard's partitioned output (kept/language=xx/) holds open at once; past it a "
        "partition's file is finished and its later rows go to a further part file.",
    )
    max_buffered_bytes: int = Field(
        WriteLayout.max_buffered_bytes,
        ge=1 << 16,
        le=1 << 36,
        description="Bytes a shard's partitioned output buffers over all partitions; past it the largest buffer "
        "is written as a row group.",
    )

    def write_layout(self) -> WriteLayout:
        """How the output files are cut into row groups and part files."""
        return WriteLayout(
            row_group_bytes=self.row_group_bytes,
            row_group_rows=self.row_group_rows,
            max_open_files=self.max_open_files,
            max_buffered_bytes=self.max_buffered_bytes,
        )

    def layout_config(self) -> dict[str, Any]:
        """The settings that decide how output files are cut (part of every reuse key over files this writes)."""
        return dataclasses.asdict(self.write_layout())


class RunSpec(_Strict):
    """How units are scheduled."""

    max_retries: int = Field(3, ge=0, le=100, description="Retries of a shard after a worker or I/O failure.")
    max_in_flight: int | None = Field(None, ge=1, description="Shards running at once; default 2 x CPUs.")
    cpus_per_task: float = Field(1.0, gt=0, le=256)
    num_cpus: int | None = Field(
        None,
        ge=1,
        le=100_000,
        description="CPUs of the embedded Ray (default: the machine's); ignored when joining a cluster (--address).",
    )


# --------------------------------------------------------------------------------------------------
# `dedup:`: which deduplication runs and with what parameters.

KeepPolicy = Literal["first_seen", "longest", "highest_score"]


class _DedupBase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    keep: KeepPolicy = Field(
        "first_seen",
        description=(
            "Which document of a cluster survives: first_seen (first in build order: the build its shard first"
            " appeared in, then shard name and row), longest or highest_score (ties by id)"
        ),
    )
    score_column: str | None = Field(None, description="Numeric column ranked by `keep: highest_score`.")
    write_duplicates: bool = Field(default=True, description="Write removed duplicates to rejected/ with their reason.")
    add_cluster_columns: bool = Field(
        default=False,
        description="Add `cluster_id` (the representative's id) and `cluster_size` to kept documents.",
    )
    by: Literal["corpus", "language"] = Field(
        "corpus",
        description="corpus: duplicates are found across the whole corpus; language: only among documents of the"
        " same `language` (FineWeb-2's per-language dedup; the column comes from language_id or the input).",
    )
    stage_text: bool = Field(
        default=False,
        description="Phase A writes the kept documents' text to _stage/kept/ and removal copies it to kept/ (a second"
        " full copy of the kept text written per build). Off (the default): phase A writes only each kept document's"
        " input row and the columns steps added; removal rereads the input shard and reruns the steps that rewrite"
        " text (c4_quality, normalise, pii, symbol_lines) on the documents it keeps: CPU instead of bytes.",
    )
    in_memory_max_edges: int = Field(
        2_000_000,
        ge=0,
        description="Connected components run in one task when the graph has at most this many edges, "
        "distributed (large-star/small-star rounds over segmented objects) otherwise.",
    )
    task_memory: int = Field(
        512 << 20,
        ge=1 << 20,
        description="Bytes of data one dedup task may hold (its worker's ~0.3-0.5 GB come on top): the automatic "
        "partition counts keep every task (band collisions, components steps) under it. Raise it where workers "
        "have more memory per CPU: fewer, larger tasks and fewer storage requests (`plan` prints them).",
    )

    @model_validator(mode="after")
    def _score_column_given(self) -> _DedupBase:
        if self.keep == "highest_score" and not self.score_column:
            msg = "keep: highest_score needs `score_column` (a numeric column such as quality_score)"
            raise ValueError(msg)
        return self


class MinhashDedup(_DedupBase):
    """MinHash LSH near-duplicate removal across the whole corpus (FineWeb's parameters by default)."""

    type: Literal["minhash"] = "minhash"
    ngram: int = Field(5, ge=1, le=32)
    bands: int = Field(14, ge=1, le=512)
    rows: int = Field(8, ge=1, le=64)
    seed: int = Field(1, ge=0)
    max_chars: int = Field(500_000, ge=1, description="Characters of text used for shingling.")
    partitions: int | None = Field(None, ge=1, le=100_000, description="Shuffle partitions; auto when unset.")
    exact_first: bool = Field(
        default=False,
        description="Report removed documents whose normalised text equals the kept one's as "
        "`exact/duplicate` (the others stay `minhash/duplicate`).",
    )
    backend: Literal["rensa", "numpy"] = Field(
        "rensa", description="MinHash implementation: rensa's R-MinHash (fast) or the NumPy reference."
    )


class ExactDedup(_DedupBase):
    """Exact duplicate removal on a hash of the normalised text."""

    type: Literal["exact"] = "exact"
    partitions: int | None = Field(None, ge=1, le=100_000)


DedupSpec = Annotated[MinhashDedup | ExactDedup, Field(discriminator="type")]


def dedup_parameters_name(dedup: DedupSpec) -> str:
    """The folder name under `_dedup/` that carries every parameter the stored signatures depend on."""
    score = f"score_{dedup.score_column}" if dedup.score_column else "noscore"
    if dedup.by == "language":
        score += "-by_language"
    if isinstance(dedup, MinhashDedup):
        backend = f"rensa{_rensa_version()}" if dedup.backend == "rensa" else dedup.backend
        exact = "-exact" if dedup.exact_first else ""
        return (
            f"minhash-n{dedup.ngram}-b{dedup.bands}-r{dedup.rows}-s{dedup.seed}-c{dedup.max_chars}"
            f"-{backend}{exact}-{score}"
        )
    return f"exact-{score}"


def _rensa_version() -> int:
    """The version of rensa's R-MinHash algorithm (signatures of different versions never mix)."""
    import rensa

    return int(rensa.RMinHash.ALGORITHM_VERSION)


class JobSpec(_Strict):
    """A whole job, validated before anything runs."""

    name: str = "job"
    input: InputSpec
    output: OutputSpec
    preset: str | dict[str, Any] | None = Field(
        None, description="A preset name, or {name: ..., <step type>: {parameters}} to change the preset's steps."
    )
    steps: list[SerializeAsAny[Step]] = Field(default_factory=list)
    dedup: DedupSpec | None = None
    run: RunSpec = Field(default_factory=RunSpec)

    @field_validator("steps", mode="before")
    @classmethod
    def _build_steps(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        return [s if isinstance(s, Step) else build_step(s, f"steps[{i}]") for i, s in enumerate(value)]

    def phase_a_config(self) -> dict[str, Any]:
        """Every setting that decides a shard's phase-A output (not paths, names or credentials), by key path.

        A step's parameters that name an asset (a model or blocklist path) are blanked: a unit's reuse key holds
        the asset's content identity instead (`Step.assets`), so moving a file without changing it redoes nothing.
        """
        steps = []
        for step in self.steps:
            assets = set(step.assets())
            steps.append({k: None if k in assets else v for k, v in step.model_dump(mode="json").items()})
        return {
            "input": self.input.model_dump(mode="json", exclude={"path", "storage_options"}),
            "output": {
                "write_rejected": self.output.write_rejected,
                "compression": self.output.compression,
                "keep_scores": self.output.keep_scores,
                # The sidecar's layout: a new layout redoes the shards of jobs that keep scores, once.
                "scores_layout": SCORES_LAYOUT if self.output.keep_scores else None,
                # Row groups and part files: a change rewrites the shards once (same rows, files cut anew).
                "layout": self.output.layout_config(),
            },
            "steps": steps,
            "dedup": self._dedup_config(),
        }

    def _dedup_config(self) -> dict[str, Any]:
        """What of `dedup:` decides phase A's output: the signatures, and whether the kept text is staged (only
        written when it is not: a job that stages text keeps the key it had before `stage_text` existed)."""
        if self.dedup is None:
            return {"signatures": None}
        config: dict[str, Any] = {"signatures": dedup_parameters_name(self.dedup)}
        if not self.dedup.stage_text:
            config["stage_text"] = False
        return config

    def phase_a_hash(self) -> str:
        """Hash of `phase_a_config`: equal for two jobs whose shards' phase-A outputs are decided alike.

        Part of every unit's reuse key, with the input's fingerprint, the steps' asset identities and versions
        (`engine.runner.keys`).
        """
        return config_hash(self.phase_a_config())

    def partition_column(self) -> str | None:
        """The column kept output is partitioned by (asked by a step, e.g. language id), if any."""
        for step in self.steps:
            column = step.output_partition()
            if column is not None:
                return column
        return None

    def resolved(self) -> dict[str, Any]:
        """The job with every default filled in and the preset expanded into `steps`; credentials removed.

        `preset` is null: its steps are listed, so running the resolved job runs each step once, as this job does.
        """
        data = self.model_dump(mode="json")
        data["preset"] = None
        for section in ("input", "output"):
            if data[section]["storage_options"]:
                data[section]["storage_options"] = {k: "<redacted>" for k in data[section]["storage_options"]}
        return data

    def resolved_yaml(self) -> str:
        """`resolved()` as YAML (a valid job file), with a comment naming the preset it expanded, if any."""
        note = ""
        if self.preset is not None:
            count = len(preset_steps(self.preset))
            note = f"# preset {preset_name(self.preset)!r} expanded: it is steps[0]..steps[{count - 1}] below\n"
        return note + str(yaml.safe_dump(self.resolved(), sort_keys=False))


def config_hash(config: dict[str, Any]) -> str:
    """A short, stable hash of a JSON-ready configuration."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def preset_name(preset: str | dict[str, Any]) -> str:
    """The name of a job's preset (`preset: fineweb2` or `preset: {name: fineweb2, ...}`)."""
    return str(preset.get("name")) if isinstance(preset, dict) else str(preset)


def preset_steps(preset: str | dict[str, Any]) -> list[dict[str, Any]]:
    """The step mappings a job's preset expands to, with the job's changes to them (`{name: ..., <step type>: {...}}`).

    Raises:
        SpecError: for a mapping without `name`, an unknown preset or a change naming a step the preset lacks.
    """
    if not isinstance(preset, dict):
        return expand_preset(str(preset))
    if not isinstance(preset.get("name"), str):
        msg = "preset.name: missing; write `preset: {name: fineweb2, <step type>: {...}}`"
        raise SpecError(msg)
    options = {key: value for key, value in preset.items() if key != "name"}
    return expand_preset(preset["name"], options)


def parse_job(raw: Any, *, source: str = "job") -> JobSpec:
    """Validate a job mapping (already parsed from YAML), reporting every problem at once.

    Raises:
        SpecError: one line per problem, each naming the key path and what is allowed.
    """
    if not isinstance(raw, dict):
        msg = f"{source}: a job file must be a YAML mapping with input, output and steps; got {type(raw).__name__}"
        raise SpecError(msg)
    problems: list[str] = []
    steps: list[Step] = []
    preset = raw.get("preset")
    if preset is not None:
        try:
            steps += [build_step(s, f"preset {preset_name(preset)}") for s in preset_steps(preset)]
        except SpecError as error:
            problems.append(str(error))
    listed = raw.get("steps") or []
    if not isinstance(listed, list):
        problems.append(f"steps: expected a list of steps, got {type(listed).__name__}")
        listed = []
    for index, mapping in enumerate(listed):
        try:
            steps.append(mapping if isinstance(mapping, Step) else build_step(mapping, f"steps[{index}]"))
        except SpecError as error:
            problems.append(str(error))
    sections = {key: value for key, value in raw.items() if key != "steps"}
    try:
        job = JobSpec.model_validate({**sections, "steps": steps})
    except ValidationError as error:
        problems += job_errors(error)
    if problems:
        count = f"{len(problems)} problems" if len(problems) > 1 else "1 problem"
        msg = f"{source}: invalid job ({count})\n" + "\n".join(problems)
        raise SpecError(msg)
    return job


def job_errors(error: ValidationError) -> list[str]:
    """One line per problem of a job's sections: its key path and what is allowed there."""
    lines = []
    for item in error.errors():
        path, model, union = _locate(item["loc"])
        kind = item["type"]
        if kind == "extra_forbidden":
            lines.append(f"{path}: unknown key{_allowed(model)}")
        elif kind == "missing" and _section_model(model, path) is not None:
            lines.append(f"{path}: missing{_allowed(_section_model(model, path))}")
        elif kind == "union_tag_not_found" and union:
            lines.append(f"{path}.type: missing; one of: {', '.join(union)}")
        elif kind == "model_type" and _section_model(model, path) is not None:
            lines.append(f"{path}: expected a mapping{_allowed(_section_model(model, path))}")
        else:
            lines.append(f"{path or 'job'}: {item['msg']}")
    return lines


def _models_in(annotation: Any) -> dict[str, type[BaseModel]]:
    """The pydantic models an annotation may hold, by their `type` tag (or class name when untagged)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        default = annotation.model_fields["type"].default if "type" in annotation.model_fields else None
        return {str(default) if isinstance(default, str) else annotation.__name__: annotation}
    found: dict[str, type[BaseModel]] = {}
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, Annotated):
        for argument in typing.get_args(annotation):
            found.update(_models_in(argument))
    return found


def _locate(loc: tuple[int | str, ...]) -> tuple[str, type[BaseModel] | None, list[str]]:
    """A pydantic error location as a key path (union tags left out), the model holding its last key, and the tags
    of the union at the path (for a missing `type`)."""
    path = ""
    model: type[BaseModel] | None = JobSpec
    parent: type[BaseModel] | None = JobSpec
    pending: dict[str, type[BaseModel]] = {}
    for part in loc:
        if isinstance(part, str) and part in pending:
            model, pending = pending[part], {}
            continue
        if isinstance(part, int):
            path += f"[{part}]"
            continue
        path += f".{part}" if path else part
        parent = model
        field = model.model_fields.get(part) if model is not None else None
        candidates = _models_in(field.annotation) if field is not None else {}
        model, pending = (next(iter(candidates.values())), {}) if len(candidates) == 1 else (None, candidates)
    return path, parent, sorted(pending)


def _section_model(parent: type[BaseModel] | None, path: str) -> type[BaseModel] | None:
    """The model of the section at `path` (e.g. `input` -> InputSpec), when `path` names one."""
    if parent is None:
        return None
    field = parent.model_fields.get(path.rsplit(".", 1)[-1])
    candidates = _models_in(field.annotation) if field is not None else {}
    return next(iter(candidates.values())) if len(candidates) == 1 else None


def _allowed(model: type[BaseModel] | None) -> str:
    return f" (keys allowed: {', '.join(model.model_fields)})" if model is not None else ""


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
