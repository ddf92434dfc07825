"""Kept documents without staged text: what phase A writes of them, and how removal rebuilds them from the input.

A dedup job with `stage_text: false` (the default) does not write the kept text twice (docs/dedup-design.md,
6.2). Phase A writes `_stage/rows/<rel>.parquet`: per kept document, in input order, its row in the input shard
(`input_row`) and the columns steps wrote (added or replaced: language, scores...); the input cannot give those
again without rerunning every step. Removal rereads the input shard, takes those rows, reruns only the steps that
rewrite text (`Step.rewrites_text`, in the job's order) and puts the columns back in the kept schema's order:
steps are pure, so the text is the one phase A would have staged.

The file's Parquet metadata holds what removal needs to do that exactly: the input's URL, fingerprint and rows (a
changed input is an error, never a silently different text), the kept schema, and for each rewriting step the
columns it saw and where each comes from (the input, or the stored columns).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from engine.errors import InputError, SpecError
from engine.io.layout import STAGE, shard_file
from engine.io.parquet import open_parquet
from engine.schema import ID, TEXT
from engine.steps.base import Step

INPUT_ROW = "input_row"
ROWS_AREA = f"{STAGE}/rows"
FROM_INPUT = "input"
FROM_STORED = "stored"

_INPUT = b"engine.input"
_KEPT_SCHEMA = b"engine.kept_schema"
_VIEWS = b"engine.rewriter_columns"
_WRITTEN_BY = b"engine.written_by"
_IN_INPUT = -1


class RebuildError(RuntimeError):
    """A rewriting step decided differently on removal's rerun than in phase A (it is not pure): a bug."""


def kept_rows_url(output: str, rel: str) -> str:
    """`OUT/_stage/rows/<rel>.parquet`: phase A's record of shard `rel`'s kept documents."""
    return shard_file(output, ROWS_AREA, rel)


View = tuple[tuple[str, str], ...]
"""The columns a rewriting step saw in phase A, in order, each with where removal takes it from."""


@dataclass(frozen=True)
class RowsLayout:
    """What phase A stores of a kept document, and what each rewriting step saw (by step index)."""

    kept_schema: pa.Schema
    stored: tuple[str, ...]
    views: tuple[tuple[int, View], ...]

    def schema(self, *, url: str, fingerprint: dict[str, Any], input_rows: int) -> pa.Schema:
        """The `_stage/rows` file's schema: `input_row`, the stored columns, and the metadata removal needs."""
        fields = [pa.field(INPUT_ROW, pa.int64()), *(self.kept_schema.field(name) for name in self.stored)]
        source = {"url": url, "fingerprint": fingerprint, "rows": input_rows}
        metadata = {
            _INPUT: json.dumps(source, sort_keys=True).encode(),
            _KEPT_SCHEMA: base64.b64encode(self.kept_schema.serialize().to_pybytes()),
            _VIEWS: json.dumps([[index, [list(pair) for pair in view]] for index, view in self.views]).encode(),
        }
        return pa.schema(fields, metadata=metadata)

    def rows_table(self, kept: pa.Table, input_rows: np.ndarray) -> pa.Table:
        """What the file holds of a batch's kept documents (`input_rows`: their rows in the input shard).

        A batch an early step emptied never reached the steps that add columns: theirs are null (no rows)."""
        n = kept.num_rows
        stored = [kept[name] if name in kept.column_names else self._nulls(name, n) for name in self.stored]
        return pa.Table.from_arrays([pa.array(input_rows, type=pa.int64()), *stored], names=[INPUT_ROW, *self.stored])

    def _nulls(self, name: str, n: int) -> pa.Array:
        return pa.nulls(n, self.kept_schema.field(name).type)


def rows_layout(input_schema: pa.Schema, kept_schema: pa.Schema, steps: Sequence[Step]) -> RowsLayout:
    """Which kept columns steps wrote, and what each rewriting step saw, found by running the steps on an empty
    batch whose columns carry the index of the step that last wrote them (the input's carry -1).

    Raises:
        SpecError: a rewriting step saw a column that a later step wrote again (its value is not stored): the
            job needs `dedup.stage_text: true`.
    """
    current = _tagged(input_schema.empty_table(), _IN_INPUT)
    seen: list[tuple[int, dict[str, int]]] = []
    for index, step in enumerate(steps):
        if step.rewrites_text:
            seen.append((index, _writers(current.schema)))
        current, _ = step.apply(current)
        current = _tagged(current, index)
    final = _writers(current.schema)
    stored = tuple(n for n in kept_schema.names if n not in (ID, TEXT) and final.get(n, _IN_INPUT) != _IN_INPUT)
    views = []
    for index, columns in seen:
        view = []
        for name, writer in columns.items():
            if name == TEXT:
                view.append((name, FROM_INPUT))
            elif writer == _IN_INPUT:
                view.append((name, FROM_INPUT))
            elif final.get(name) == writer and name in stored:
                view.append((name, FROM_STORED))
            else:
                msg = (
                    f"steps[{index}] ({steps[index].label}) rewrites text and reads a batch holding column {name!r},"
                    f" which a later step writes again: removal cannot rebuild the text without it; set"
                    f" `dedup.stage_text: true`"
                )
                raise SpecError(msg)
        views.append((index, tuple(view)))
    return RowsLayout(kept_schema, stored, tuple(views))


def _tagged(table: pa.Table, writer: int) -> pa.Table:
    """`table` with every untagged column tagged as written by step `writer` (the input: -1)."""
    fields = []
    for f in table.schema:
        metadata = dict(f.metadata or {})
        metadata.setdefault(_WRITTEN_BY, str(writer).encode())
        fields.append(f.with_metadata(metadata))
    return pa.Table.from_arrays(table.columns, schema=pa.schema(fields, metadata=table.schema.metadata))


def _writers(schema: pa.Schema) -> dict[str, int]:
    return {f.name: int((f.metadata or {}).get(_WRITTEN_BY, b"-1")) for f in schema}


@dataclass(frozen=True)
class StagedRows:
    """A `_stage/rows` file read back: its rows and columns, and what phase A recorded of the input."""

    table: pa.Table
    url: str
    fingerprint: dict[str, Any]
    input_rows: int
    kept_schema: pa.Schema
    views: dict[int, View]

    @classmethod
    def of(cls, table: pa.Table, where: str) -> StagedRows:
        metadata = table.schema.metadata or {}
        if _INPUT not in metadata or _KEPT_SCHEMA not in metadata:
            msg = f"{where} lacks what phase A records of its input; delete the shard's _units marker and rerun"
            raise InputError(msg)
        source = json.loads(metadata[_INPUT])
        kept_schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(metadata[_KEPT_SCHEMA])))
        views = {int(i): tuple((str(n), str(s)) for n, s in view) for i, view in json.loads(metadata[_VIEWS])}
        return cls(table, str(source["url"]), dict(source["fingerprint"]), int(source["rows"]), kept_schema, views)


def recorded_input(url: str, storage_options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The input URL and fingerprint phase A recorded in the `_stage/rows` file at `url` (its footer only)."""
    with open_parquet(url, storage_options) as parquet:
        metadata = parquet.schema_arrow.metadata or {}
    if _INPUT not in metadata:
        msg = f"{url} lacks what phase A records of its input; delete the shard's _units marker and rerun"
        raise InputError(msg)
    source = json.loads(metadata[_INPUT])
    return str(source["url"]), dict(source["fingerprint"])


def rebuild(
    documents: pa.Table, stored: pa.Table, kept_schema: pa.Schema, rewriters: Sequence[tuple[Step, View]]
) -> pa.Table:
    """Kept documents as phase A kept them: `documents` (canonical input rows) with their text rewritten by
    `rewriters` in order, and `stored` (their rows of the `_stage/rows` file) for the columns steps wrote.

    Raises:
        RebuildError: a rewriting step dropped a document phase A kept (the step is not pure).
    """
    text = documents[TEXT]
    for step, view in rewriters:
        seen = {name: stored[name] if source == FROM_STORED else documents[name] for name, source in view}
        seen[TEXT] = text
        batch = pa.table(seen)
        result, verdict = step.apply(batch)
        if not bool(np.all(verdict.keep)) or result.num_rows != batch.num_rows:
            msg = (
                f"step {step.label!r} dropped {int(np.sum(~verdict.keep))} document(s) on removal's rerun that it"
                " kept in phase A: a step that rewrites text must be pure; this is a bug, please report it"
            )
            raise RebuildError(msg)
        text = result[TEXT]
    names = set(stored.column_names)
    arrays = [text if n == TEXT else stored[n] if n in names else documents[n] for n in kept_schema.names]
    return pa.Table.from_arrays(arrays, schema=kept_schema)
