"""fastText quality classifiers (`type: quality_classifier`): score documents, keep by threshold or top fraction.

DCLM's quality stage scores every document with a binary fastText classifier (`__label__hq`, trained on
OpenHermes-2.5 and ELI5 answers, against `__label__cc`, random Common Crawl) and keeps the best-scored
ones. The engine trains such classifiers itself (`engine.models.training`, CLI `train-quality`) and applies
them with the step below. Nothing is specific to "quality": any binary fastText classifier (toxicity,
domain, ...) is trained and applied the same way, with its own label and column names.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import ClassVar, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from engine.batch import Verdict, with_column
from engine.errors import SpecError
from engine.models.loader import DEFAULT_MAX_CHARS, LABEL_PREFIX, check_model, load_model, prepare_texts
from engine.models.training import DEFAULT_POSITIVE_LABEL
from engine.schema import ID, QUALITY_SCORE
from engine.steps.base import Annotator, Decides, Measures, register


def positive_probability(
    labels: list[list[str]], probs: list[np.ndarray], positive: str, *, binary: bool
) -> np.ndarray:
    """Probability of `positive` (a full `__label__x` string) per row, from fastText's list `predict`.

    For a two-label model predicted with k=1 this is DCLM's rule (`p` if the top label is positive,
    else `1 - p`); otherwise the rows come from k=-1 and the positive label's entry is looked up
    (0 where absent). fastText's probabilities carry a +1e-5 smoothing term, so scores are clipped to
    [0, 1].
    """
    n = len(labels)
    if binary and all(len(p) == 1 for p in probs):
        top = np.fromiter((row[0] == positive for row in labels), dtype=bool, count=n)
        p = np.concatenate(probs).astype(np.float64) if n else np.zeros(0)
        scores = np.where(top, p, 1.0 - p)
    else:
        scores = np.array(
            [dict(zip(row, p, strict=True)).get(positive, 0.0) for row, p in zip(labels, probs, strict=True)],
            dtype=np.float64,
        )
    return np.clip(scores, 0.0, 1.0)


def top_fraction_mask(scores: np.ndarray, ids: pa.ChunkedArray | pa.Array, fraction: float) -> np.ndarray:
    """Rows among the `ceil(fraction * n)` best scores; ties broken by `id` (then position): deterministic."""
    n = len(scores)
    keep = np.zeros(n, dtype=bool)
    count = min(n, math.ceil(fraction * n - 1e-9))
    if count == 0:
        return keep
    table = pa.table({"score": pa.array(scores), "id": ids, "row": pa.array(np.arange(n))})
    order = pc.sort_indices(table, sort_keys=[("score", "descending"), ("id", "ascending"), ("row", "ascending")])
    keep[np.asarray(order.to_numpy())[:count]] = True
    return keep


@register
class QualityClassifier(Annotator):
    """Score each document with a binary fastText classifier; keep by threshold or by top fraction.

    Adds `score_column` (default `quality_score`): the probability of `positive_label`, in [0, 1];
    blank text scores 0. Texts are prepared as DCLM's enricher does (newlines joined with spaces),
    the same preparation `train_quality_classifier` applies to its training data.

    Keeping (at most one of):
    - `min_score`: keep documents scoring at least this (DCLM-Baseline used a fixed threshold,
      0.018112 for its OH-2.5+ELI5 model, chosen as a percentile of the score distribution).
    - `keep_top_fraction`: keep the `ceil(f * n)` best-scored documents **of each batch** (a batch is
      one row group of a shard as the unit reads it), ties broken by `id`. This is deterministic for a
      given input and reader, but only approximates a global top fraction: for an exact corpus-wide
      percentile, score once without a threshold, pick the threshold, then rerun with `min_score`.
    - neither: annotate only.

    Drops with: ``low_score``.
    """

    type: Literal["quality_classifier"] = "quality_classifier"
    version: ClassVar[int] = 1
    model: str = Field(description="fastText classifier path or fsspec URL (e.g. from `train-quality`)")
    positive_label: str = Field(default=DEFAULT_POSITIVE_LABEL, description="label whose probability is the score")
    score_column: str = Field(default=QUALITY_SCORE, min_length=1)
    min_score: float | None = Field(default=None, ge=0, le=1)
    keep_top_fraction: float | None = Field(default=None, gt=0, le=1)
    max_chars: int | None = Field(default=DEFAULT_MAX_CHARS, ge=1)
    parameters = {
        "model": Measures("is the classifier that measured every score"),
        "positive_label": Measures("chooses which label's probability was stored as the score"),
        "score_column": Measures("renames the score column; the sidecar holds the run's name"),
        "min_score": Decides(),  # bounds `score_column` (see `thresholds`)
        "keep_top_fraction": Decides(),
        "max_chars": Measures("changes how much of each text the classifier read"),
    }

    def thresholds(self) -> dict[str, list[tuple[str, float]]]:
        return {self.score_column: [("min_score", self.min_score)]} if self.min_score is not None else {}

    def batch_ranking(self) -> tuple[str, float] | None:
        return (self.score_column, self.keep_top_fraction) if self.keep_top_fraction is not None else None

    @model_validator(mode="after")
    def _one_rule(self) -> QualityClassifier:
        if self.min_score is not None and self.keep_top_fraction is not None:
            msg = "give either min_score or keep_top_fraction, not both"
            raise ValueError(msg)
        if self.positive_label.startswith(LABEL_PREFIX):
            msg = f"positive_label: write it without {LABEL_PREFIX!r} (e.g. 'hq')"
            raise ValueError(msg)
        return self

    def assets(self) -> dict[str, str]:
        return {"model": self.model}

    def check(self) -> None:
        """The model loads and has `positive_label` among its labels."""
        labels = check_model(self.model)
        if self.positive_label not in labels:
            msg = (
                f"positive_label {self.positive_label!r} is not a label of the model {self.model!r}; "
                f"its labels are: {', '.join(labels)}"
            )
            raise SpecError(msg)

    def __call__(self, batch: pa.Table) -> tuple[pa.Table, Verdict]:
        prepared, blank = prepare_texts(batch, self.max_chars)
        if prepared:
            model = load_model(self.model)
            binary = len(model.labels) == 2
            labels, probs = model.predict(prepared, k=1 if binary else -1)
            scores = positive_probability(labels, probs, LABEL_PREFIX + self.positive_label, binary=binary)
        else:
            scores = np.zeros(0)
        scores[blank] = 0.0
        annotated = with_column(batch, self.score_column, pa.array(scores, type=pa.float64()))
        measured = {self.score_column: scores}
        if self.keep_top_fraction is not None:
            measured[ID] = np.asarray(batch[ID].to_pylist(), dtype=object)
        return annotated, self.decide(measured)

    def decide(self, measured: Mapping[str, np.ndarray]) -> Verdict:
        """`low_score` by `min_score`, or outside the batch's top fraction (`measured` is then one batch, with `id`)."""
        scores = np.asarray(measured[self.score_column], dtype=np.float64)
        if self.min_score is not None:
            low = scores < self.min_score
        elif self.keep_top_fraction is not None:
            ids = pa.array(np.asarray(measured[ID], dtype=object).tolist(), type=pa.string())
            low = ~top_fraction_mask(scores, ids, self.keep_top_fraction)
        else:
            low = np.zeros(len(scores), dtype=bool)
        return Verdict.from_rules(low_score=low, scores={self.score_column: scores})
