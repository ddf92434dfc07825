"""`Step.rewrites_text` is true exactly for the steps that change `text`.

A dedup job without staged text reruns exactly those steps on the documents removal keeps (engine.dedup.kept_rows):
a step that changed text without saying so would make kept/ differ from what phase A kept.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from engine.schema import TEXT
from engine.steps.base import build_step, known_step_types
from tests.conftest import SAMPLE_DIR
from tests.fasttext_fixtures import TinyModel

# Lines each rewriting step changes, added to real sample documents.
ADDED = [
    "Write to jane.roe@example.org or reach our server at 8.8.4.4 for the full article.",  # pii
    "The cafÃ© serves crÃ¨me brÃ»lÃ©e every day of the week.",  # normalise (mojibake)
    "| | | | | | |",  # symbol_lines (its default symbols)
    "Please enable javascript to view this page.",  # c4_quality
]
REQUIRED: dict[str, dict[str, Any]] = {"quality_classifier": {}}
"""Steps without defaults for every parameter: their parameters (filled by the test)."""


def sample_batch() -> pa.Table:
    table = pq.read_table(sorted(SAMPLE_DIR.glob("*.parquet"))[0]).slice(0, 60)
    texts = [f"{text}\n{ADDED[i % len(ADDED)]}" for i, text in enumerate(table[TEXT].to_pylist())]
    ids = pa.array([str(i) for i in range(table.num_rows)])
    batch = pa.table({"id": ids, TEXT: pa.array(texts, type=pa.large_string()), "url": table["url"]})
    labelled, _ = build_step({"type": "language_id"}).apply(batch)  # steps reading `language` find it
    return labelled


def test_rewrites_text_is_declared_by_exactly_the_steps_that_change_text(tiny_fasttext_model: TinyModel) -> None:
    REQUIRED["quality_classifier"] = {"model": tiny_fasttext_model.path}
    batch = sample_batch()
    found = {}
    for name in known_step_types():
        step = build_step({"type": name, **REQUIRED.get(name, {})})
        result, _ = step.apply(batch)
        changed = result[TEXT].to_pylist() != batch[TEXT].to_pylist()
        found[name] = (type(step).rewrites_text, changed)
    assert {name: declared for name, (declared, _) in found.items()} == {
        name: changed for name, (_, changed) in found.items()
    }
    assert {name for name, (declared, _) in found.items() if declared} == {
        "c4_quality",
        "normalise",
        "pii",
        "symbol_lines",
    }
