"""`rehydrate`: kept documents repeated by their cluster size (FineWeb-2's upsampling), file by file."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine import run_job
from engine.cli import main
from engine.inspect.rehydrate import FINEWEB2_WEIGHTS, parse_weights, repeats
from engine.schema import CLUSTER_SIZE
from engine.spec import parse_job
from tests.dedup.staging import corpus, split


def test_fineweb2_table_gives_each_size_its_published_weight() -> None:
    sizes = np.array([1, 2, 3, 4, 5, 99, 100, 999, 1000, 10**9, 0])
    assert repeats(sizes, parse_weights(FINEWEB2_WEIGHTS)).tolist() == [1, 2, 3, 3, 5, 5, 8, 8, 1, 1, 1]


@pytest.mark.parametrize(
    "table",
    ["1:1,3+:2", "1:1,2-3:2", "1:1,2+:1,5+:1", "2+:1", "1:1,2-1:3,2+:1", "1:x,2+:1", "1-3:2,3+:1"],
)
def test_weight_tables_with_gaps_overlaps_or_no_open_end_are_refused(table: str) -> None:
    with pytest.raises(ValueError, match="weights|open range"):
        parse_weights(table)


@pytest.mark.ray
def test_rehydrated_files_repeat_every_kept_document_by_its_weight(ray_local: None, tmp_path: Path) -> None:
    rows = corpus(8, originals=12, copies=3)
    src = tmp_path / "in"
    src.mkdir()
    for rel, table in split(rows, 3).items():
        pq.write_table(table, src / f"{rel}.parquet")
    out = tmp_path / "out"
    job = {
        "name": "rehydrate",
        "input": {"path": str(src)},
        "output": {"path": str(out)},
        "steps": [{"type": "doc_length", "min_words": 5}],
        "dedup": {"type": "minhash", "add_cluster_columns": True},
    }
    stats = run_job(parse_job(job))
    assert stats.duplicates > 0
    dest = tmp_path / "hydrated"
    assert main(["rehydrate", str(out), "--to", str(dest), "--weights", "1:1,2-3:N,4+:4"]) == 0

    kept = pq.read_table(out / "kept")
    hydrated = pq.read_table(dest)
    sizes = kept[CLUSTER_SIZE].fill_null(1).to_pylist()
    expected = {doc: min(size, 4) for doc, size in zip(kept["id"].to_pylist(), sizes, strict=True)}
    assert Counter(hydrated["id"].to_pylist()) == expected  # every kept document, each its weight's times
    assert sum(expected.values()) > kept.num_rows  # some clusters were repeated
    assert sorted(p.name for p in dest.rglob("*.parquet")) == sorted(p.name for p in (out / "kept").rglob("*.parquet"))


def test_a_run_without_cluster_columns_is_refused_with_what_to_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "run" / "kept").mkdir(parents=True)
    pq.write_table(pa.table({"id": ["a"], "text": ["x"]}), tmp_path / "run" / "kept" / "p.parquet")
    assert main(["rehydrate", str(tmp_path / "run"), "--to", str(tmp_path / "dest")]) == 2
    assert "add_cluster_columns: true" in capsys.readouterr().err
    assert not (tmp_path / "dest").exists()
