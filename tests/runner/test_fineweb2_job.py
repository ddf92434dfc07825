"""jobs/examples/fineweb2.yaml (`preset: fineweb2`, dedup by language) on the multilingual sample, on the local Ray."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from engine.api import run_job
from engine.spec import load_job
from engine.steps.segmentation import missing_libraries

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.ray
@pytest.mark.skipif(bool(missing_libraries()), reason="needs corpus-engine[multilingual]")
def test_fineweb2_example_keeps_each_language_under_its_name(ray_local: None, tmp_path: Path) -> None:
    job = load_job(REPO / "jobs" / "examples" / "fineweb2.yaml", output=str(tmp_path / "out"))
    job = job.model_copy(update={"input": job.input.model_copy(update={"path": str(REPO / "data" / "sample")})})
    stats = run_job(job)
    assert stats.is_conserved()
    kept_dir = tmp_path / "out" / "kept"
    languages = {p.name for p in kept_dir.iterdir()}
    assert {"language=cmn_Hani", "language=rus_Cyrl", "language=deu_Latn", "language=jpn_Jpan"} <= languages
    assert all(name.startswith("language=") and "_" in name for name in languages)
    kept = sum(pq.read_metadata(p).num_rows for p in kept_dir.rglob("*.parquet"))
    assert kept == stats.docs_kept
    # English has no FineWeb-2 config (it is FineWeb): dropped with that reason, never filtered as another language
    assert stats.dropped["fineweb2_language/no_config"] >= 250
    assert not any(reason.startswith("language_id/") for reason in stats.dropped)  # the cut is per language
    table = pq.read_table(next((kept_dir / "language=cmn_Hani").rglob("*.parquet")))
    assert {"language_label", "language_score"} <= set(table.column_names)
    assert set(table["language_label"].to_pylist()) == {"zh"}
    # Deduplicated (within each language: tests/dedup/test_by_language.py), cluster sizes kept for rehydrate.
    assert all("cluster_size" in pq.read_schema(p).names for p in kept_dir.rglob("*.parquet"))
    duplicates_files = (tmp_path / "out" / "rejected").rglob("*.duplicates.parquet")
    assert sum(pq.read_metadata(p).num_rows for p in duplicates_files) == stats.duplicates
    report = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "Languages of kept documents" in report
    assert "cmn_Hani" in report
    assert "<h3>Drop rate per language</h3>" in report  # FineWeb-2 languages drop at their own rates
