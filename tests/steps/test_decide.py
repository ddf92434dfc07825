"""Every step's `decide` gives, from the values the step stored, the verdict the step gave (issue 12).

`what-if` re-decides a run from its score sidecar with `decide`; these checks keep each step's `decide` and its
`__call__` in step on real documents (the sample corpus), and keep the sidecar's columns the same whatever reaches
a step (an empty batch names the same scores and labels as a full one).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.batch import make_batch
from engine.schema import ID
from engine.steps.base import Decides, Measures, build_step, known_step_types, step_class
from engine.steps.presets import expand_preset
from engine.steps.segmentation import missing_libraries
from tests.conftest import SAMPLE_DIR
from tests.fasttext_fixtures import TinyModel, tiny_fasttext_model  # noqa: F401  (a fixture)

# One configuration per registered step, with non-default values where the defaults leave a rule idle.
CONFIGS: dict[str, dict[str, Any]] = {
    "doc_length": {"min_words": 80, "max_chars": 6000},
    "url_filter": {"soft_banned_words": ["news", "blog"], "soft_word_threshold": 1, "extra_domains": ["wikipedia.org"]},
    "language_id": {"languages": ["en", "de"], "min_score": 0.7},
    "gopher_repetition": {},
    "gopher_quality": {},
    "c4_quality": {},
    "fineweb_quality": {},
    "c4_badwords": {"keep_fraction": 0.4, "missing_language": "drop", "default_language": "xx"},
    "quality_classifier": {"keep_top_fraction": 0.3},
    "normalise": {},
    "fineweb2_language": {"min_scores": {"deu_Latn": 0.9}},
    "pii": {},
    "symbol_lines": {},
}
# FineWeb-2's steps read each document's language: they run after these steps (the real lid.176 model).
LANGUAGE_STEPS: list[dict[str, Any]] = [{"type": "language_id", "min_score": 0.0}, {"type": "fineweb2_language"}]
NEEDS_LANGUAGE: dict[str, list[dict[str, Any]]] = {"fineweb2_language": LANGUAGE_STEPS[:1]}
# The steps FineWeb-2 judges per language, as `preset: fineweb2` configures them.
PER_LANGUAGE: dict[str, dict[str, Any]] = {
    f"{step['type']} per_language": {key: value for key, value in step.items() if key != "type"}
    for step in expand_preset("fineweb2")
    if "per_language" in step
}


@pytest.fixture(scope="module")
def sample_batch() -> pa.Table:
    table = pa.concat_tables(pq.read_table(SAMPLE_DIR / f"part-00{i}.parquet") for i in range(4))
    return make_batch(
        {"id": table["id"].to_pylist(), "text": table["text"].to_pylist(), "url": table["url"].to_pylist()}
    )


def build(case: str, model: TinyModel, batch: pa.Table) -> tuple[Any, pa.Table]:
    """The step of a case (a step type or "<type> per_language") and the batch it runs on."""
    step_type = case.split()[0]
    config = dict(PER_LANGUAGE[case] if case in PER_LANGUAGE else CONFIGS[case])
    if step_type == "quality_classifier":
        config["model"] = model.path
    preceding = LANGUAGE_STEPS if case in PER_LANGUAGE else NEEDS_LANGUAGE.get(case, [])
    for mapping in preceding:
        batch, verdict = build_step(mapping).apply(batch)
        batch = batch.filter(pa.array(verdict.keep))
    return build_step({"type": step_type, **config}), batch


# The per-language cases split the sample's Chinese, Japanese, Thai... text with the `multilingual` extra's libraries.
_MISSING = missing_libraries()
CASES = [
    *sorted(CONFIGS),
    *(
        pytest.param(
            case,
            marks=pytest.mark.skipif(
                bool(_MISSING), reason=f"needs corpus-engine[multilingual] (missing: {sorted(_MISSING)})"
            ),
        )
        for case in sorted(PER_LANGUAGE)
    ),
]


def test_every_step_has_a_config() -> None:
    assert set(CONFIGS) >= set(known_step_types()) - {t for t in known_step_types() if t.startswith("test_")}


@pytest.mark.parametrize("step_type", CASES)
def test_decide_gives_the_verdict_the_step_gave(
    step_type: str,
    sample_batch: pa.Table,
    tiny_fasttext_model: TinyModel,  # noqa: F811
) -> None:
    step, batch = build(step_type, tiny_fasttext_model, sample_batch)
    _, verdict = step.apply(batch)
    if not step.can_decide():
        assert all(isinstance(role, Measures) for role in type(step).parameters.values())
        return
    measured: dict[str, np.ndarray] = {**verdict.scores, **verdict.labels}
    if step.batch_ranking() is not None:
        measured[ID] = np.asarray(batch[ID].to_pylist(), dtype=object)
    again = step.decide(measured)
    assert (~verdict.keep).any(), f"{step_type}: the sample drops nothing, so this checks nothing"
    np.testing.assert_array_equal(again.keep, verdict.keep)
    assert again.reason.tolist() == verdict.reason.tolist()


@pytest.mark.parametrize("step_type", CASES)
def test_an_empty_batch_names_the_same_values(
    step_type: str,
    sample_batch: pa.Table,
    tiny_fasttext_model: TinyModel,  # noqa: F811
) -> None:
    step, batch = build(step_type, tiny_fasttext_model, sample_batch)
    _, full = step.apply(batch.slice(0, 50))
    _, empty = step.apply(batch.slice(0, 0))
    assert set(empty.scores) == set(full.scores)
    assert set(empty.labels) == set(full.labels)


@pytest.mark.parametrize("step_type", CASES)
def test_deciding_parameters_name_scores_the_step_measures(
    step_type: str,
    sample_batch: pa.Table,
    tiny_fasttext_model: TinyModel,  # noqa: F811
) -> None:
    step, batch = build(step_type, tiny_fasttext_model, sample_batch)
    _, verdict = step.apply(batch.slice(0, 50))
    for param, role in type(step).parameters.items():
        if isinstance(role, Decides):
            assert set(role.scores) <= set(verdict.scores), f"{step_type}.{param} bounds a score the step never gives"
    assert set(step.thresholds()) <= set(verdict.scores)
    assert step_class(step.type).parameters.keys() == set(type(step).model_fields) - {"type", "name"}
