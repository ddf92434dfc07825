"""The one batch type (`pyarrow.Table` with `id` and `text`) and the `Verdict` every step returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from engine.schema import ID, TEXT

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Verdict:
    """What a step decided for each row of a batch.

    Attributes:
        keep: one bool per row.
        reason: one entry per row: the rule that dropped it (first that fired), None where kept.
        scores: measured values per row (NaN where not measured), so thresholds can be revisited
            without recomputing.
        labels: measured categories per row (a language code; None where not measured), for the same reason.
    """

    keep: BoolArray
    reason: npt.NDArray[np.object_]
    scores: Mapping[str, FloatArray] = field(default_factory=dict)
    labels: Mapping[str, npt.NDArray[np.object_]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.keep)
        arrays = [*self.scores.values(), *self.labels.values()]
        if len(self.reason) != n or any(len(v) != n for v in arrays):
            msg = f"Verdict arrays disagree in length: keep={n}, reason={len(self.reason)}"
            raise ValueError(msg)

    def __len__(self) -> int:
        return len(self.keep)

    @classmethod
    def keep_all(cls, n: int, scores: Mapping[str, FloatArray] | None = None) -> Verdict:
        """A verdict that keeps every one of `n` rows."""
        return cls(np.ones(n, dtype=bool), np.full(n, None, dtype=object), dict(scores or {}))

    @classmethod
    def from_rules(cls, *, scores: Mapping[str, npt.ArrayLike] | None = None, **rules: npt.ArrayLike) -> Verdict:
        """Build a verdict from named boolean "drop" masks, in the order given.

        A row is dropped when any rule fires; its reason is the first rule (in keyword order) that fired.
        Rules may be None-free bool arrays or anything NumPy turns into one (NaN comparisons are False).
        """
        score_arrays = {k: np.asarray(v, dtype=np.float64) for k, v in (scores or {}).items()}
        masks = [(name, np.asarray(mask, dtype=bool)) for name, mask in rules.items()]
        if not masks:
            msg = "Verdict.from_rules needs at least one rule"
            raise ValueError(msg)
        n = len(masks[0][1])
        reason = np.full(n, None, dtype=object)
        undecided = np.ones(n, dtype=bool)
        for name, mask in masks:
            fired = mask & undecided
            reason[fired] = name
            undecided &= ~mask
        return cls(undecided, reason, score_arrays)

    def with_labels(self, **labels: npt.ArrayLike) -> Verdict:
        """The same verdict with measured categories (`language=...`) added to `labels`."""
        arrays = {name: np.asarray(values, dtype=object) for name, values in labels.items()}
        return Verdict(self.keep, self.reason, self.scores, {**self.labels, **arrays})

    def prefixed(self, step: str) -> Verdict:
        """The same verdict with reasons written `step/rule`, as they appear in outputs and stats."""
        reason = self.reason.copy()
        dropped = ~self.keep
        reason[dropped] = [f"{step}/{r}" for r in reason[dropped]]
        return Verdict(self.keep, reason, self.scores, self.labels)


def text_column(batch: pa.Table) -> pa.ChunkedArray:
    """The `text` column as one large_string chunked array (nulls kept as nulls)."""
    column = batch[TEXT]
    if column.type != pa.large_string():
        column = column.cast(pa.large_string())
    return column


def texts(batch: pa.Table) -> list[str]:
    """The `text` column as Python strings (nulls as ""), for rules that cannot vectorise."""
    return [t if t is not None else "" for t in batch[TEXT].to_pylist()]


def make_batch(columns: Mapping[str, list[object]]) -> pa.Table:
    """Build a batch from plain lists (tests, notebooks); `text` becomes large_string, `id` string."""
    arrays: dict[str, pa.Array] = {}
    for name, values in columns.items():
        if name == TEXT:
            arrays[name] = pa.array(values, type=pa.large_string())
        elif name == ID:
            arrays[name] = pa.array(values, type=pa.string())
        else:
            arrays[name] = pa.array(values)
    if ID not in arrays and TEXT in arrays:
        arrays[ID] = pa.array([str(i) for i in range(len(arrays[TEXT]))], type=pa.string())
    return pa.table(arrays)


def with_column(batch: pa.Table, name: str, values: pa.Array) -> pa.Table:
    """`batch` with column `name` set to `values` (replaced in place if present, else appended)."""
    index = batch.schema.get_field_index(name)
    if index >= 0:
        return batch.set_column(index, name, values)
    return batch.append_column(name, values)


def take(batch: pa.Table, mask: BoolArray) -> pa.Table:
    """Rows of `batch` where `mask` is true."""
    return batch.filter(pa.array(mask, type=pa.bool_()))


def text_bytes(batch: pa.Table) -> int:
    """UTF-8 bytes of all texts in the batch (nulls count 0)."""
    if batch.num_rows == 0:
        return 0
    return int(pc.sum(pc.fill_null(pc.binary_length(batch[TEXT]), 0)).as_py() or 0)


def utf8_lengths(batch: pa.Table) -> npt.NDArray[np.int64]:
    """Characters per document (0 for null)."""
    lengths = pc.fill_null(pc.utf8_length(text_column(batch)), 0)
    return np.asarray(lengths.to_numpy(zero_copy_only=False), dtype=np.int64)
