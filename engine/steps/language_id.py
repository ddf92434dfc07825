"""fastText language identification (`type: language_id`): adds `language` and `language_score`.

Reference: FineWeb keeps documents whose top fastText lid.176 score is at least 0.65 (datatrove's
`LanguageFilter`, `language_threshold=0.65`, which predicts on the text with newlines replaced by spaces).

Language codes are the model's labels without `__label__`, unchanged. For the default model, lid.176,
that is the ISO 639-1 two-letter code where one exists (`en`, `fr`, `zh`) and otherwise the model's own
code (ISO 639-3 such as `ceb`, `war`, `yue`, or a Wikipedia code such as `als`, `bar`, `nds`). The
codes written in `languages:` must be those labels: `languages: [en]`, never `eng`. `validate` rejects a
code the model cannot emit and suggests the nearest labels. A GlotLID-style model has labels such as
`eng_Latn`; its codes are then written that way.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import ClassVar, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from engine.batch import Verdict, with_column
from engine.errors import SpecError
from engine.models.loader import (
    DEFAULT_MAX_CHARS,
    check_model,
    default_lid_model,
    load_model,
    prepare_texts,
    strip_label,
)
from engine.schema import LANGUAGE, LANGUAGE_SCORE
from engine.steps.base import Annotator, Decides, Measures, register


def top_labels(labels: list[list[str]], probs: list[np.ndarray]) -> tuple[list[str | None], np.ndarray]:
    """The top label (prefix stripped) and its probability, from fastText's `predict(list, k=1)`."""
    codes: dict[str, str] = {}
    top: list[str | None] = []
    for row in labels:
        if row:
            label = row[0]
            code = codes.get(label)
            if code is None:
                code = codes[label] = strip_label(label)
            top.append(code)
        else:
            top.append(None)
    if all(len(p) == 1 for p in probs):
        scores = np.concatenate(probs).astype(np.float64) if probs else np.zeros(0)
    else:
        scores = np.array([p[0] if len(p) else 0.0 for p in probs], dtype=np.float64)
    return top, scores


def suggest_codes(code: str, labels: tuple[str, ...]) -> list[str]:
    """Labels a user may have meant by `code` (`eng` -> `en`; `en_US` -> `en`)."""
    lowered = code.lower()
    by_prefix = [label for label in labels if lowered.startswith(label.lower()) or label.lower().startswith(lowered)]
    close = difflib.get_close_matches(code, labels, n=3, cutoff=0.6)
    return list(dict.fromkeys(by_prefix[:3] + close))


@register
class LanguageId(Annotator):
    """Identify each document's language with fastText; keep chosen languages above a score.

    Adds `language` (the model's top label without `__label__`; null for blank text) and
    `language_score` (its probability; 0 for blank text). A document is kept when its score is at
    least `min_score` and, if `languages` is given, its language is one of them. Defaults follow
    FineWeb (lid.176, 0.65). Unlike datatrove, which keeps a document when any listed language scores
    above the threshold, the decision uses the top label only; the two agree whenever
    `min_score >= 0.5` (at most one label can then pass).

    Drops with: ``low_score`` (checked first: the model is unsure), ``not_in_languages``.
    """

    type: Literal["language_id"] = "language_id"
    version: ClassVar[int] = 1
    model: str | None = Field(
        default=None, description="fastText LID model path or fsspec URL; default: lid.176.ftz shipped with the engine"
    )
    languages: tuple[str, ...] | None = Field(
        default=None,
        min_length=1,
        description="codes to keep, exactly as the model's labels (lid.176: `en`, not `eng`); None = any",
    )
    min_score: float = Field(default=0.65, ge=0, le=1, description="FineWeb: 0.65")
    max_chars: int | None = Field(
        default=DEFAULT_MAX_CHARS, ge=1, description="predict on the first max_chars characters (None: whole text)"
    )
    partition_by_language: bool = Field(default=False, description="write kept output under kept/language=xx/")
    parameters = {
        "model": Measures("is the model that measured every language and score"),
        "languages": Decides(),
        "min_score": Decides((LANGUAGE_SCORE,)),
        "max_chars": Measures("changes how much of each text the model read"),
        # Where kept documents are written, not which: re-deciding it changes no document's fate.
        "partition_by_language": Decides(),
    }

    @property
    def model_path(self) -> str:
        """The model to load: `model`, or the packaged lid.176.ftz."""
        return self.model if self.model is not None else default_lid_model()

    def output_partition(self) -> str | None:
        return LANGUAGE if self.partition_by_language else None

    def assets(self) -> dict[str, str]:
        return {"model": self.model_path}

    def check(self) -> None:
        """The model loads and every code in `languages` is one of its labels."""
        labels = check_model(self.model_path)
        unknown = [code for code in self.languages or () if code not in labels]
        if unknown:
            hints = []
            for code in unknown:
                suggestions = suggest_codes(code, labels)
                hints.append(
                    f"{code!r} (did you mean {', '.join(map(repr, suggestions))}?)" if suggestions else repr(code)
                )
            msg = (
                f"languages: {', '.join(hints)} not emitted by the model {self.model_path!r}. Write codes exactly "
                f"as the model's labels: lid.176 uses ISO 639-1 two-letter codes where one exists ('en', 'fr', "
                f"'de'), else its own code ('ceb', 'yue'). This model's labels include: {', '.join(labels[:20])}"
            )
            raise SpecError(msg)

    def __call__(self, batch: pa.Table) -> tuple[pa.Table, Verdict]:
        prepared, blank = prepare_texts(batch, self.max_chars)
        if prepared:
            labels, probs = load_model(self.model_path).predict(prepared, k=1)
            codes, scores = top_labels(labels, probs)
        else:
            codes, scores = [], np.zeros(0)
        if blank.any():
            for index in np.flatnonzero(blank):
                codes[index] = None
            scores[blank] = 0.0
        language = pa.array(codes, type=pa.string())
        annotated = with_column(batch, LANGUAGE, language)
        annotated = with_column(annotated, LANGUAGE_SCORE, pa.array(scores, type=pa.float64()))
        return annotated, self.decide({LANGUAGE_SCORE: scores, LANGUAGE: np.asarray(codes, dtype=object)})

    def decide(self, measured: Mapping[str, np.ndarray]) -> Verdict:
        """`low_score` from `language_score`, then `not_in_languages` from the stored `language` label."""
        scores = np.asarray(measured[LANGUAGE_SCORE], dtype=np.float64)
        codes = np.asarray(measured[LANGUAGE], dtype=object)
        if self.languages is None:
            outside = np.zeros(len(codes), dtype=bool)
        else:
            wanted = pc.is_in(pa.array(codes.tolist(), type=pa.string()), value_set=pa.array(self.languages))
            outside = ~np.asarray(pc.fill_null(wanted, False).to_numpy(zero_copy_only=False), dtype=bool)
        return Verdict.from_rules(
            low_score=scores < self.min_score,
            not_in_languages=outside,
            scores={LANGUAGE_SCORE: scores},
        ).with_labels(**{LANGUAGE: codes})
