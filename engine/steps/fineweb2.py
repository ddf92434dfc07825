"""FineWeb-2's recipe: each document judged with its own language's published settings.

Two pieces make the Gopher and FineWeb steps per-language:

- `fineweb2_language` (an annotator, after `language_id`) turns each document's language label into its FineWeb-2
  config name (`cmn_Hani`; lid.176 codes through the shipped table, see `engine.steps.languages`), applies that
  language's `language_score` cut (`>=`, as FineWeb-2's LambdaFilter), and can restrict the languages kept.
- `per_language: {}` on `gopher_repetition`, `fineweb_quality` and `gopher_quality` makes a step split words
  for each document's language (`engine.steps.segmentation`) and take the language's values for the fields
  FineWeb-2 tuned (`LANGUAGE_FIELDS`); `per_language.overrides` replaces any field for one language or for all
  (`"*"`), e.g. `{tha_Thai: {max_avg_word_length: 12}, "*": {min_doc_words: 30}}`.

Thresholds become per-row arrays, so a batch mixing languages is still judged in one columnar pass.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from engine.batch import Verdict, with_column
from engine.errors import SpecError
from engine.schema import LANGUAGE, LANGUAGE_SCORE
from engine.steps import segmentation as seg
from engine.steps import text as tx
from engine.steps.base import Annotator, Decides, Filter, Measures, register
from engine.steps.languages import config_names, fineweb2_config, fineweb2_configs
from engine.steps.segmentation import Backend
from engine.steps.tokens import AnyTokenizer, english_words

if TYPE_CHECKING:
    from engine.steps.base import Step

# Per step type: the (n, fraction) list fields, whose sizes n choose what is measured.
LANGUAGE_PAIRS: dict[str, tuple[str, ...]] = {"gopher_repetition": ("top_n_grams", "dup_n_grams")}

# Why `per_language` is a measuring parameter (what-if cannot re-decide a change of it).
PER_LANGUAGE_MEASURES = "chooses each document's word splitter and the word lists and n-gram sizes of its language"

# Column keeping the model's own label once `language` holds the FineWeb-2 config name.
LANGUAGE_LABEL = "language_label"

# Per step type: step field <- FineWeb-2 config key (the fields FineWeb-2 tuned per language).
LANGUAGE_FIELDS: dict[str, dict[str, str]] = {
    "gopher_repetition": {"dup_line_frac": "dup_line_frac", "top_n_grams": "top_n_grams", "dup_n_grams": "dup_n_grams"},
    "fineweb_quality": {"line_punct_thr": "line_punct_thr", "new_line_ratio": "new_line_ratio"},
    "gopher_quality": {
        "min_avg_word_length": "min_avg_word_length",
        "max_avg_word_length": "max_avg_word_length",
        "min_alpha_words_ratio": "max_non_alpha_words_ratio",
        "stop_words": "stopwords",
    },
}


class PerLanguage(BaseModel):
    """Judge each document with its language's FineWeb-2 settings (`per_language:` on a step)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    column: str = Field(LANGUAGE, description="Column holding each document's FineWeb-2 config name.")
    overrides: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Field values per language (`tha_Thai`) or for every language (`*`), over FineWeb-2's.",
    )
    word_splitters: dict[str, Backend] = Field(
        default_factory=dict,
        description="Word splitter per language instead of the default (`tha_Thai: icu`, faster, less faithful).",
    )


def tokenizer(step: Step) -> AnyTokenizer:
    """The tokenizer of a step's words: per document's language with `per_language`, else the English one."""
    per_language: PerLanguage | None = getattr(step, "per_language", None)
    if per_language is None:
        return english_words
    return seg.LanguageTokenizer(per_language.column, tuple(sorted(per_language.word_splitters.items())))


_DATA = resources.files("engine") / "data" / "fineweb2"


def assets(step: Step) -> dict[str, str]:
    """The files a per-language step's words and settings come from (their contents are part of each unit's reuse
    key): the shipped FineWeb-2 configs and spaCy rules, and the installed word splitters' package metadata (their
    versions), so a new dictionary or model redoes the shards."""
    per_language: PerLanguage | None = getattr(step, "per_language", None)
    if per_language is None:
        return {}
    files = {
        "fineweb2/configs": str(_DATA / "configs.json.gz"),
        "fineweb2/spacy_rules": str(_DATA / "spacy_rules.json.gz"),
        "fineweb2/spacy_tokenizers": str(_DATA / "spacy_tokenizers.json.gz"),
    }
    backends = sorted({*seg.DEFAULT_BACKENDS, *per_language.word_splitters.values()})
    files.update({f"word_splitter/{name}": path for name, path in seg.library_files(backends).items()})
    return files


def check_libraries(step: Step) -> None:
    """Fail at `validate` when a word splitter the step may need is not installed.

    Raises:
        SpecError: naming the packages and the extra that brings them.
    """
    per_language: PerLanguage | None = getattr(step, "per_language", None)
    if per_language is None:
        return
    missing = seg.missing_libraries(sorted({*seg.DEFAULT_BACKENDS, *per_language.word_splitters.values()}))
    if missing:
        detail = "; ".join(f"{backend}: {', '.join(modules)}" for backend, modules in sorted(missing.items()))
        msg = (
            f"{step.label}.per_language splits words per language and needs packages that are not installed "
            f"({detail}): pip install 'corpus-engine[multilingual]'"
        )
        raise SpecError(msg)


def redecide_refusal(step: Step, measured_by: Step, default: Callable[[Step], str | None]) -> str | None:
    """Why `step` cannot re-decide what `measured_by` (the run's step) measured, for a per-language step.

    A change of `per_language` that only changes deciding fields in `overrides` (a language's threshold) is
    re-decided like any threshold; a changed column, word splitter, or overridden measuring field (stop words,
    n-gram sizes) is refused. `default` is the step's own check, run with `per_language` as in the run.
    """
    old: PerLanguage | None = getattr(measured_by, "per_language", None)
    new: PerLanguage | None = getattr(step, "per_language", None)
    if old == new or type(measured_by) is not type(step):
        return default(measured_by)
    if old is None or new is None or old.column != new.column or old.word_splitters != new.word_splitters:
        return f"{step.type}.per_language {PER_LANGUAGE_MEASURES}"
    for language in sorted(set(old.overrides) | set(new.overrides)):
        before, after = old.overrides.get(language, {}), new.overrides.get(language, {})
        for field in sorted(set(before) | set(after)):
            if before.get(field) == after.get(field):
                continue
            role = type(step).parameters.get(field)
            if not isinstance(role, Decides):
                why = role.why if isinstance(role, Measures) else "is not a deciding parameter"
                return f"{step.type}.per_language.overrides.{language}.{field} {why}"
    for field in LANGUAGE_PAIRS.get(step.type, ()):
        if measured_sizes(step, field) != measured_sizes(measured_by, field):
            return (
                f"{step.type}.per_language.overrides change the n-gram sizes measured for {field}; only the "
                "fractions can be re-decided"
            )
    return default(measured_by.model_copy(update={"per_language": new}))


def check_overrides(step: Step) -> None:
    """Fail at construction if an override names an unknown language or field, or a value the field rejects.

    Raises:
        ValueError: naming the language, the field and the problem (pydantic reports it under the step).
    """
    per_language: PerLanguage | None = getattr(step, "per_language", None)
    if per_language is None:
        return
    configs = fineweb2_configs()
    for language in per_language.word_splitters:
        _known(language)
    for language, values in per_language.overrides.items():
        if language != "*" and language not in configs:
            _known(language)
        unknown = sorted(set(values) - set(type(step).model_fields) - {"type"})
        if unknown:
            msg = f"per_language.overrides.{language}: unknown field(s) {', '.join(unknown)} of {step.type}"
            raise ValueError(msg)
        try:
            type(step).model_validate({**step.model_dump(exclude={"per_language"}), **values})
        except ValidationError as error:
            msg = f"per_language.overrides.{language}: {error.errors()[0]['msg']} ({error.errors()[0]['loc']})"
            raise ValueError(msg) from None


class PerLanguageFilter(Filter):
    """A filter that can judge each document with its language's FineWeb-2 settings (`per_language:`).

    The hooks every such step shares: overrides checked at construction, re-deciding refused when `per_language`
    changes what is measured, word-splitter packages checked at `validate`, and the shipped data and splitter
    versions in each unit's reuse key. A step adds its own re-decide conditions in `_refusal_as_run`.
    """

    per_language: PerLanguage | None = Field(None, description="Judge each document with its language's settings.")

    @model_validator(mode="after")
    def _check_overrides(self) -> Self:
        check_overrides(self)
        return self

    def redecide_refusal(self, measured_by: Step) -> str | None:
        return redecide_refusal(self, measured_by, self._refusal_as_run)

    def _refusal_as_run(self, measured_by: Step) -> str | None:
        """The step's own re-decide check, given `per_language` as in the run."""
        return super().redecide_refusal(measured_by)

    def check(self) -> None:
        check_libraries(self)

    def assets(self) -> dict[str, str]:
        return assets(self)


def _known(name: str) -> None:
    """Raise ValueError (reported by pydantic under the step's key) for a name FineWeb-2 has no config for."""
    try:
        fineweb2_config(name)
    except SpecError as error:
        raise ValueError(str(error)) from None


def language_settings(step: Step, language: str | None) -> dict[str, Any]:
    """The step's field values for one language: its own fields, FineWeb-2's values, then the overrides."""
    values = step.model_dump(exclude={"per_language", "name", "type"})
    per_language: PerLanguage | None = getattr(step, "per_language", None)
    if per_language is None:
        return values
    config = fineweb2_configs().get(language) if language is not None else None
    if config is not None:
        published = config.as_dict()
        for field, key in LANGUAGE_FIELDS.get(step.type, {}).items():
            value = published[key]
            values[field] = tuple(tuple(pair) for pair in value) if key.endswith("n_grams") else value
    values.update(per_language.overrides.get("*", {}))
    if language is not None:
        values.update(per_language.overrides.get(language, {}))
    return values


@dataclass(frozen=True)
class RowSettings:
    """Every row's field values: `languages[index[row]]` is the row's language, `settings` per language."""

    languages: list[str | None]
    index: npt.NDArray[np.int64]
    settings: list[dict[str, Any]]

    def values(self, field: str, *, default: float = np.nan) -> npt.NDArray[np.float64]:
        """A numeric field per row (None -> `default`)."""
        per_language = [s[field] if s[field] is not None else default for s in self.settings]
        return np.asarray(per_language, dtype=np.float64)[self.index]

    def pairs(self, field: str, sizes: Sequence[int]) -> dict[int, npt.NDArray[np.float64]]:
        """An (n, fraction) list field as {n: fraction per row} for each of `sizes`, 0 (rule off) where a
        language lacks that n."""
        out = {}
        for size in sizes:
            per_language = [dict((int(n), float(f)) for n, f in s[field]).get(size, 0.0) for s in self.settings]
            out[size] = np.asarray(per_language, dtype=np.float64)[self.index]
        return out


def settings_for(step: Step, labels: Sequence[str | None]) -> RowSettings:
    """Each row's settings from its language label (None: the step's own fields and the `*` overrides)."""
    languages = list(dict.fromkeys(labels))
    position = {language: i for i, language in enumerate(languages)}
    index = np.fromiter((position[v] for v in labels), dtype=np.int64, count=len(labels))
    return RowSettings(languages, index, [language_settings(step, language) for language in languages])


def row_settings(step: Step, batch: pa.Table) -> RowSettings | None:
    """Each row's settings when the step has `per_language` (from the batch's language column), else None."""
    per_language: PerLanguage | None = getattr(step, "per_language", None)
    if per_language is None:
        return None
    if per_language.column not in batch.column_names:
        return settings_for(step, [None] * batch.num_rows)
    return settings_for(step, batch[per_language.column].to_pylist())


def measured_settings(step: Step, measured: Mapping[str, npt.NDArray[Any]]) -> RowSettings | None:
    """Each row's settings from the `language` label the step stored with its scores (for `decide`), or None.

    Raises:
        KeyError: `language`, when the step has `per_language` but the stored values lack the label.
    """
    if getattr(step, "per_language", None) is None:
        return None
    return settings_for(step, list(measured[LANGUAGE]))


def measured_scores(measured: Mapping[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
    """The stored values without the `language` label (the scores a verdict carries)."""
    return {name: values for name, values in measured.items() if name != LANGUAGE}


def labelled(verdict: Verdict, settings: RowSettings | None) -> Verdict:
    """The verdict with each row's language as the `language` label, so `decide` can find its settings again."""
    if settings is None:
        return verdict
    return verdict.with_labels(**{LANGUAGE: np.asarray(settings.languages, dtype=object)[settings.index]})


def bound(step: Step, settings: RowSettings | None, field: str, *, off: float = np.nan) -> float | npt.NDArray[Any]:
    """A numeric field's value, per row with `settings`; None becomes `off` (the value that turns the rule off)."""
    if settings is not None:
        return settings.values(field, default=off)
    value = getattr(step, field)
    return off if value is None else float(value)


def pairs(step: Step, settings: RowSettings | None, field: str) -> dict[int, float | npt.NDArray[np.float64]]:
    """An (n, fraction) list field as {n: fraction}, per row with `settings`.

    With `per_language` the sizes are every size any language may use (the shipped configs', the step's own and
    the overrides'), whatever languages the batch holds: the step measures, and stores, the same scores for
    every batch (a fraction of 0 turns a size off for a language without it).
    """
    if settings is not None:
        return dict(settings.pairs(field, measured_sizes(step, field)))
    return {int(size): float(fraction) for size, fraction in getattr(step, field)}


def measured_sizes(step: Step, field: str) -> list[int]:
    """The n-gram sizes a `per_language` step measures for an (n, fraction) list field."""
    sizes = set(_config_sizes(field)) | {int(n) for n, _ in getattr(step, field)}
    per_language: PerLanguage | None = getattr(step, "per_language", None)
    for values in per_language.overrides.values() if per_language is not None else ():
        sizes |= {int(n) for n, _ in values.get(field, ())}
    return sorted(sizes)


@lru_cache(maxsize=4)
def _config_sizes(field: str) -> frozenset[int]:
    """Every n of an (n, fraction) field in the shipped configs (`top_n_grams` -> 2, 3, 4)."""
    key = LANGUAGE_FIELDS["gopher_repetition"][field]
    return frozenset(int(n) for config in fineweb2_configs().values() for n, _ in config.as_dict()[key])


def above(value: npt.ArrayLike, bound: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """value > bound per row; a bound of 0 or NaN turns the rule off for that row (datatrove's truthiness)."""
    value, bound = np.asarray(value, dtype=np.float64), np.asarray(bound, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.asarray((value > bound) & (bound != 0) & ~np.isnan(bound), dtype=bool)


def below(value: npt.ArrayLike, bound: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """value < bound per row; a bound of 0 or NaN turns the rule off for that row (datatrove's truthiness)."""
    value, bound = np.asarray(value, dtype=np.float64), np.asarray(bound, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.asarray((value < bound) & (bound != 0) & ~np.isnan(bound), dtype=bool)


def stop_word_counts(words: tx.Pieces, settings: RowSettings, field: str, *, distinct: bool) -> npt.NDArray[np.float64]:
    """Per row, the stop words of its language found among its words: distinct ones, or every occurrence."""
    n = len(settings.index)
    table = pl.DataFrame(
        {
            "language": [i for i, s in enumerate(settings.settings) for _ in s[field]],
            "word": [w for s in settings.settings for w in s[field]],
        },
        schema={"language": pl.Int64, "word": pl.String},
    ).unique()
    found = pl.DataFrame({"row": words.row, "language": settings.index[words.row], "word": words.values}).join(
        table, on=["language", "word"], how="inner"
    )
    if distinct:
        found = found.unique(subset=["row", "word"])
    return np.bincount(found["row"].to_numpy(), minlength=n).astype(np.float64)


@register
class FineWeb2Language(Annotator):
    """Give each document its FineWeb-2 language and apply that language's language-score cut.

    Reads `language` and `language_score` (from `language_id`); writes the FineWeb-2 config name to
    `language` and the model's own label to `language_label`. A lid.176 label maps through the shipped table
    (`zh` -> `cmn_Hani`; several scripts resolved by the document's letters); a GlotLID label is kept as it
    is. Kept when the language has a config, is in `languages` (if given) and its score is at least the
    language's published `language_score` (or `min_score`/`min_scores`, which override it).

    Drops with: ``no_language`` (blank text: no label), ``no_config`` (FineWeb-2 has no settings for it:
    lid.176's `en` and `sh`, unknown labels), ``not_in_languages``, ``low_score``.
    """

    type: Literal["fineweb2_language"] = "fineweb2_language"
    version: ClassVar[int] = 1
    languages: tuple[str, ...] | None = Field(
        None, min_length=1, description="FineWeb-2 config names to keep (one pins the job to a language); None: all"
    )
    language_map: dict[str, str] = Field(
        default_factory=dict, description="Model label -> config name, before the shipped table (`sh: hrv_Latn`)."
    )
    min_score: float | None = Field(None, ge=0, le=1, description="One cut for every language; None: each its own.")
    min_scores: dict[str, float] = Field(default_factory=dict, description="Per-language cut, over FineWeb-2's.")
    partition_by_language: bool = Field(True, description="Write kept output under kept/language=xxx_Scrp/.")
    parameters = {
        "languages": Decides(),
        "language_map": Measures("chooses the config name stored as each document's `language`"),
        "min_score": Decides((LANGUAGE_SCORE,)),
        "min_scores": Decides((LANGUAGE_SCORE,)),
        # Where kept documents are written, not which: re-deciding it changes no document's fate.
        "partition_by_language": Decides(),
    }

    @model_validator(mode="after")
    def _known_languages(self) -> FineWeb2Language:
        for name in (*(self.languages or ()), *self.language_map.values(), *self.min_scores):
            _known(name)
        return self

    def output_partition(self) -> str | None:
        return LANGUAGE if self.partition_by_language else None

    def assets(self) -> dict[str, str]:
        return {"fineweb2/configs": str(_DATA / "configs.json.gz"), "fineweb2/lid176": str(_DATA / "lid176.tsv")}

    def cut(self, language: str) -> float:
        """The language-score cut for one FineWeb-2 language."""
        if language in self.min_scores:
            return self.min_scores[language]
        if self.min_score is not None:
            return self.min_score
        return fineweb2_config(language).language_score

    def __call__(self, batch: pa.Table) -> tuple[pa.Table, Verdict]:
        if LANGUAGE not in batch.column_names or LANGUAGE_SCORE not in batch.column_names:
            msg = "fineweb2_language needs `language` and `language_score`: put a language_id step before it"
            raise SpecError(msg)
        labels: list[str | None] = batch[LANGUAGE].to_pylist()
        names = config_names(labels, tx._texts(batch), self.language_map)
        scores = np.asarray(pc.fill_null(batch[LANGUAGE_SCORE], 0.0).to_numpy(zero_copy_only=False), dtype=float)
        annotated = with_column(batch, LANGUAGE_LABEL, pa.array(labels, type=pa.string()))
        annotated = with_column(annotated, LANGUAGE, pa.array(names, type=pa.string()))
        return annotated, self.decide(
            {
                LANGUAGE_SCORE: scores,
                LANGUAGE: np.asarray(names, dtype=object),
                LANGUAGE_LABEL: np.asarray(labels, dtype=object),
            }
        )

    def decide(self, measured: Mapping[str, npt.NDArray[Any]]) -> Verdict:
        """The rules from the stored model label, config name and score (`languages` and the cuts may change)."""
        scores = np.asarray(measured[LANGUAGE_SCORE], dtype=np.float64)
        names: list[str | None] = list(measured[LANGUAGE])
        labels: list[str | None] = list(measured[LANGUAGE_LABEL])
        no_label = np.array([label is None for label in labels], dtype=bool)
        no_config = np.array([name is None for name in names], dtype=bool) & ~no_label
        wanted = set(self.languages) if self.languages is not None else None
        outside = np.array(
            [name is not None and wanted is not None and name not in wanted for name in names], dtype=bool
        )
        cuts = {name: self.cut(name) for name in set(names) if name is not None}
        cut = np.array([cuts.get(name, np.inf) if name is not None else np.inf for name in names], dtype=float)
        return Verdict.from_rules(
            no_language=no_label,
            no_config=no_config,
            not_in_languages=outside,
            low_score=scores < cut,
            scores={LANGUAGE_SCORE: scores, "language_score_cut": np.where(np.isinf(cut), np.nan, cut)},
        ).with_labels(**{LANGUAGE: np.asarray(names, dtype=object), LANGUAGE_LABEL: np.asarray(labels, dtype=object)})


def resolved_languages(steps: Sequence[Step], languages: Sequence[str]) -> dict[str, dict[str, Any]]:
    """What each of `languages` gets from the job's steps: score cut, word splitter, per-language values.

    For `validate --resolved`: per step with `per_language`, the fields FineWeb-2 tunes and any overridden
    field, as that language sees them.
    """
    from engine.steps.segmentation import backend_for

    out: dict[str, dict[str, Any]] = {}
    for language in languages:
        config = fineweb2_config(language)
        entry: dict[str, Any] = {"tokenizer": config.tokenizer, "word_splitter": backend_for(config.tokenizer)}
        for step in steps:
            if isinstance(step, FineWeb2Language):
                entry[f"{step.label}.min_language_score"] = step.cut(language)
            per_language: PerLanguage | None = getattr(step, "per_language", None)
            if per_language is None:
                continue
            values = language_settings(step, language)
            shown = set(LANGUAGE_FIELDS.get(step.type, {}))
            shown |= set(per_language.overrides.get("*", {})) | set(per_language.overrides.get(language, {}))
            entry[step.label] = {field: _plain(values[field]) for field in sorted(shown)}
        out[language] = entry
    return out


def _plain(value: Any) -> Any:
    """Tuples as lists (for YAML output)."""
    return [_plain(v) for v in value] if isinstance(value, tuple | list) else value
