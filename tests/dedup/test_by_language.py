"""`dedup: {by: language}` (FineWeb-2's per-language dedup): copies meet only within their language."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine import run_job
from engine.errors import EngineError
from engine.runner.run import RunFailed
from engine.spec import parse_job
from tests.dedup.staging import mutate, random_text

pytestmark = pytest.mark.ray


def _corpus(folder: Path, *, with_language: bool = True) -> None:
    """Two shards; each text once in `en` and once in `fr`; half the texts again in `en`, one word in 200 changed."""
    rng = random.Random(7)
    texts = [random_text(rng, 200) for _ in range(20)]
    rows: list[dict[str, Any]] = []
    for i, text in enumerate(texts):
        rows.append({"id": f"en-{i}", "text": text, "language": "en"})
        rows.append({"id": f"fr-{i}", "text": text, "language": "fr"})
        if i % 2 == 0:
            rows.append({"id": f"en-{i}-near", "text": mutate(rng, text, 0.005), "language": "en"})
    rng.shuffle(rows)
    folder.mkdir()
    for shard, part in enumerate((rows[: len(rows) // 2], rows[len(rows) // 2 :])):
        table = pa.Table.from_pylist(part)
        pq.write_table(table if with_language else table.drop_columns(["language"]), folder / f"p-{shard}.parquet")


def _job(src: Path, out: Path, by: str) -> Any:
    return parse_job(
        {
            "name": "by-language",
            "input": {"path": str(src)},
            "output": {"path": str(out)},
            "steps": [{"type": "doc_length", "min_words": 5}],
            "dedup": {"type": "minhash", "by": by},
        }
    )


def _kept_ids(out: Path) -> set[str]:
    return set(pq.read_table(out / "kept", columns=["id"])["id"].to_pylist())


def test_copies_in_other_languages_are_kept_and_copies_in_one_language_removed(ray_local: None, tmp_path: Path) -> None:
    src = tmp_path / "in"
    _corpus(src)
    by_language = run_job(_job(src, tmp_path / "lang", "language"))
    kept = _kept_ids(tmp_path / "lang")
    assert by_language.is_conserved()
    for i in range(20):
        assert f"fr-{i}" in kept  # the only French copy of its text
        assert (f"en-{i}" in kept) != (f"en-{i}-near" in kept) if i % 2 == 0 else f"en-{i}" in kept
    assert by_language.duplicates == 10  # one near copy per even text, within English
    dups = pq.read_table(tmp_path / "lang" / "rejected", columns=["id", "language"])
    assert set(dups["language"].to_pylist()) == {"en"}

    whole = run_job(_job(src, tmp_path / "corpus", "corpus"))
    assert whole.duplicates == 30  # across languages too: each text keeps one copy in all
    assert len(_kept_ids(tmp_path / "corpus")) == 20


def test_dedup_by_language_without_a_language_column_fails_saying_what_to_add(ray_local: None, tmp_path: Path) -> None:
    src = tmp_path / "in"
    _corpus(src, with_language=False)
    with pytest.raises((RunFailed, EngineError)) as failure:
        run_job(_job(src, tmp_path / "out", "language"))
    assert "by: language needs a 'language' column" in str(failure.value)
    assert "language_id" in str(failure.value)
