"""Dedup without staged text (issue 13, docs/dedup-design.md 6.2): removal rebuilds kept/ from the input.

Phase A writes only each kept document's input row and the columns steps wrote (`_stage/rows/`); removal rereads
the input, reruns the steps that rewrite text and must write exactly what the staged-text path writes.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine import run_job
from engine.dedup.kept_rows import INPUT_ROW, rows_layout
from engine.dedup.plan import ShardInput, make_plan
from engine.errors import InputError, SpecError
from engine.io.paths import Shard
from engine.runner.dedup import run_dedup
from engine.runner.executor import SerialExecutor
from engine.runner.unit import run_unit
from engine.schema import LANGUAGE, TEXT
from engine.spec import JobSpec, load_job, parse_job
from engine.steps.base import build_step
from tests.conftest import REPO, SAMPLE_DIR

PII_LINE = "Write to jane.roe@example.org or reach our server at 8.8.4.4 for the full article."
MOJIBAKE = "The cafÃ© serves crÃ¨me brÃ»lÃ©e every day of the week, and the terrace is open in summer."

# Every step that rewrites text, between filters and an annotator (FineWeb order, with PII and fixes).
REWRITING_CHAIN: list[dict[str, Any]] = [
    {"type": "normalise"},
    {"type": "language_id", "languages": ["en"], "min_score": 0.5},
    {"type": "gopher_repetition"},
    {"type": "gopher_quality"},
    {"type": "c4_quality", "filter_no_terminal_punct": False},
    {"type": "fineweb_quality"},
    {"type": "pii"},
    {"type": "symbol_lines"},
]


def write_input(src: Path, *, seed: int = 7, shards: int = 4, rows: int | None = None) -> int:
    """The sample's real documents (`rows` of each of its first `shards` shards), with PII and mojibake lines added
    to some and copies of some across shards (exact duplicates under new ids); the number of documents written."""
    rng = random.Random(seed)
    src.mkdir(parents=True, exist_ok=True)
    tables = [pq.read_table(path) for path in sorted(SAMPLE_DIR.glob("*.parquet"))[:shards]]
    tables = [table.slice(0, rows) for table in tables]
    texts = [t for table in tables for t in table[TEXT].to_pylist()]
    total = 0
    for number, table in enumerate(tables):
        rows: list[dict[str, Any]] = table.to_pylist()
        for row in rows:
            if rng.random() < 0.3:
                row[TEXT] = f"{row[TEXT]}\n{PII_LINE}"
            if rng.random() < 0.2:
                row[TEXT] = f"{MOJIBAKE}\n{row[TEXT]}"
        copies = [dict(rows[0], id=f"copy-{number}-{i}", text=rng.choice(texts)) for i in range(len(rows) // 7)]
        rows = rows + copies
        rng.shuffle(rows)
        pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), src / f"part-{number:03d}.parquet")
        total += len(rows)
    return total


def job_over(src: Path, out: Path, *, stage_text: bool, **dedup: Any) -> JobSpec:
    return parse_job(
        {
            "name": "nostage",
            "input": {"path": str(src), "batch_rows": 64},
            "output": {"path": str(out)},
            "steps": REWRITING_CHAIN,
            "dedup": {"type": "minhash", "stage_text": stage_text, **dedup},
        }
    )


def outputs(out: Path) -> dict[str, pa.Table]:
    """Every kept/ and rejected/ file of a run, by path under the output."""
    return {
        str(path.relative_to(out)): pq.read_table(path)
        for area in ("kept", "rejected")
        for path in sorted((out / area).rglob("*.parquet"))
    }


@pytest.mark.ray
@pytest.mark.parametrize(
    "dedup",
    [{"write_duplicates": True, "add_cluster_columns": True}, {"write_duplicates": False, "keep": "longest"}],
    ids=["duplicates-and-cluster-columns", "no-duplicates-longest"],
)
def test_removal_rebuilds_the_staged_text_document_for_document(
    ray_local: None, tmp_path: Path, dedup: dict[str, Any]
) -> None:
    src = tmp_path / "in"
    docs = write_input(src)
    staged = run_job(job_over(src, tmp_path / "staged", stage_text=True, **dedup))
    rebuilt = run_job(job_over(src, tmp_path / "rebuilt", stage_text=False, **dedup))

    expected, found = outputs(tmp_path / "staged"), outputs(tmp_path / "rebuilt")
    assert sorted(found) == sorted(expected)
    for name, table in expected.items():
        assert found[name].schema == table.schema, name
        assert found[name].equals(table), name
    kept = pa.concat_tables([t for n, t in found.items() if n.startswith("kept/")])
    kept_texts = kept[TEXT].to_pylist()
    # The chain did rewrite: PII replaced, mojibake repaired, lines removed (not a copy of the input).
    assert not any("jane.roe@example.org" in t for t in kept_texts)
    assert any("crème brûlée" in t for t in kept_texts)
    assert not any("cafÃ©" in t for t in kept_texts)
    assert staged.duplicates == rebuilt.duplicates > 0
    assert staged.docs_in == rebuilt.docs_in == docs
    assert rebuilt.written == staged.written  # counted from the files each removal wrote

    # No second copy of the text: phase A staged rows and step columns only.
    assert not (tmp_path / "rebuilt" / "_stage" / "kept").exists()
    rows = [pq.read_table(p) for p in (tmp_path / "rebuilt" / "_stage" / "rows").glob("*.parquet")]
    assert rows
    assert all(TEXT not in t.column_names and INPUT_ROW in t.column_names for t in rows)
    assert {LANGUAGE, "language_score"} <= set(rows[0].column_names)
    assert "url" not in rows[0].column_names  # the input gives it again
    assert sum(t.num_rows for t in rows) == rebuilt.written["staged"]


@pytest.mark.ray
def test_the_fineweb2_example_rebuilds_the_staged_text(ray_local: None, tmp_path: Path) -> None:
    """FineWeb-2's recipe: per-language dedup, normalise, C4 lines split by each row's language, PII."""
    src = tmp_path / "in"
    write_input(src, shards=2, rows=60)
    found = {}
    for stage_text in (True, False):
        out = tmp_path / f"stage-{stage_text}"
        job = load_job(REPO / "jobs" / "examples" / "fineweb2.yaml", output=str(out))
        dedup = job.dedup.model_copy(update={"stage_text": stage_text}) if job.dedup else None
        job = job.model_copy(update={"input": job.input.model_copy(update={"path": str(src)}), "dedup": dedup})
        run_job(job)
        found[stage_text] = outputs(out)
    assert sorted(found[False]) == sorted(found[True])
    assert any(name.startswith("kept/") for name in found[True])
    for name, table in found[True].items():
        assert found[False][name].equals(table), name


@pytest.mark.ray
def test_duplicates_by_language_counts_what_removal_removed_14(ray_local: None, tmp_path: Path) -> None:
    src = tmp_path / "in"
    write_input(src)
    stats = run_job(job_over(src, tmp_path / "out", stage_text=False))
    dups = pa.concat_tables([pq.read_table(p) for p in (tmp_path / "out" / "rejected").rglob("*.duplicates.parquet")])
    languages = dups[LANGUAGE].to_pylist()
    assert stats.duplicates == len(languages) > 0
    assert dict(stats.duplicates_by_language) == {lang: languages.count(lang) for lang in set(languages)}


def phase_a(job: JobSpec, src: Path) -> list[str]:
    """Run phase A on every input shard (no Ray); the shards' names."""
    rels = sorted(p.stem for p in src.glob("*.parquet"))
    for rel in rels:
        run_unit(job, Shard(str(src / f"{rel}.parquet"), rel))
    return rels


def test_a_batch_emptied_before_the_steps_that_add_columns_is_staged(tmp_path: Path) -> None:
    """A batch whose rows an early filter drops never reaches language_id: its (no) rows still stage alike."""
    src = tmp_path / "in"
    src.mkdir()
    texts = [pq.read_table(path)[TEXT][0].as_py() for path in sorted(SAMPLE_DIR.glob("*.parquet"))]
    rows = ["too short"] * 4 + texts + texts  # batch 1: all dropped by doc_length; the copies are duplicates
    pq.write_table(pa.table({"id": [str(i) for i in range(len(rows))], TEXT: rows}), src / "part-000.parquet")
    job = parse_job(
        {
            "input": {"path": str(src), "batch_rows": 4},
            "output": {"path": str(tmp_path / "out")},
            "steps": [{"type": "doc_length", "min_words": 5}, {"type": "language_id"}, {"type": "pii"}],
            "dedup": {"type": "minhash"},
        }
    )
    rels = phase_a(job, src)
    outcome = run_dedup(job, rels, SerialExecutor())
    assert outcome.kept == len(texts)
    assert outcome.duplicates == len(texts)
    kept = pa.concat_tables([pq.read_table(p) for p in (tmp_path / "out" / "kept").rglob("*.parquet")])
    assert sorted(kept[TEXT].to_pylist()) == sorted(texts)  # no PII in these: pii leaves them as they are
    assert LANGUAGE in kept.column_names


def test_a_changed_input_under_a_reused_phase_a_is_an_error_not_other_text(tmp_path: Path) -> None:
    src = tmp_path / "in"
    write_input(src)
    chain = [{"type": "c4_quality", "filter_no_terminal_punct": False}, {"type": "pii"}]
    job = parse_job(
        {
            "input": {"path": str(src)},
            "output": {"path": str(tmp_path / "out")},
            "steps": chain,
            "dedup": {"type": "minhash"},
        }
    )
    rels = phase_a(job, src)
    run_dedup(job, rels, SerialExecutor())
    # The input is replaced (same rows, other texts) but phase A is not rerun: removal must not rebuild kept/
    # from texts phase A never saw.
    table = pq.read_table(src / "part-001.parquet")
    texts = [f"{t}\nA changed line." for t in table[TEXT].to_pylist()]
    pq.write_table(
        table.set_column(table.schema.get_field_index(TEXT), TEXT, pa.array(texts)), src / "part-001.parquet"
    )
    with pytest.raises(InputError, match=r"part-001.*changed since phase A filtered it"):
        run_dedup(job, rels, SerialExecutor())


def test_removal_key_covers_the_input_and_the_rewriting_steps(tmp_path: Path) -> None:
    def removal_for(pii: dict[str, Any], *, stage_text: bool, identity: Any = "phase-a") -> Any:
        job = parse_job(
            {
                "input": {"path": str(tmp_path)},
                "output": {"path": str(tmp_path / "out")},
                "steps": [{"type": "doc_length"}, {"type": "pii", **pii}],
                "dedup": {"type": "minhash", "stage_text": stage_text},
            }
        )
        _, removal = make_plan(job, ["a"], {"a": ShardInput(rows=3, identity=identity)})
        return removal

    other = {"email_replacement": ["<email>"]}
    rebuilt = removal_for({}, stage_text=False)
    assert [step.type for _, step in rebuilt.rewriters] == ["pii"]
    assert rebuilt.settings != removal_for(other, stage_text=False).settings
    assert rebuilt.identities != removal_for({}, stage_text=False, identity="other input").identities
    # With staged text the removal key is what it was: the staged file's identity stands for the steps.
    assert removal_for({}, stage_text=True).settings == removal_for(other, stage_text=True).settings
    assert removal_for({}, stage_text=True).settings != rebuilt.settings


def test_columns_a_step_replaces_are_stored_and_input_columns_are_not() -> None:
    canonical = pa.schema(
        [("id", pa.string()), (TEXT, pa.large_string()), ("url", pa.string()), (LANGUAGE, pa.string())]
    )
    steps = [build_step({"type": "language_id"}), build_step({"type": "c4_quality"})]
    current = canonical.empty_table()
    for step in steps:
        current, _ = step.apply(current)
    layout = rows_layout(canonical, current.schema, steps)
    # language_id replaces the input's `language`: its value is stored, the url comes from the input again.
    assert set(layout.stored) == {LANGUAGE, "language_score"}
    ((index, view),) = layout.views
    assert index == 1
    assert dict(view) == {"id": "input", TEXT: "input", "url": "input", LANGUAGE: "stored", "language_score": "stored"}


def test_a_rewriting_step_reading_a_column_written_again_later_asks_for_staged_text() -> None:
    canonical = pa.schema([("id", pa.string()), (TEXT, pa.large_string())])
    steps = [build_step({"type": "language_id"}), build_step({"type": "pii"}), build_step({"type": "language_id"})]
    current = canonical.empty_table()
    for step in steps:
        current, _ = step.apply(current)
    with pytest.raises(SpecError, match="stage_text: true"):
        rows_layout(canonical, current.schema, steps)


@pytest.mark.ray
@pytest.mark.s3
def test_removal_rebuilds_from_an_input_on_s3(ray_local: None, s3_server: dict[str, str], tmp_path: Path) -> None:
    """On S3 (moto): removal fingerprints the input as phase A's listing did, and rebuilds the staged text."""
    import s3fs

    fs = s3fs.S3FileSystem(**s3_server)
    fs.mkdir("nostage")
    src = tmp_path / "in"
    write_input(src, shards=2, rows=40)
    for path in sorted(src.glob("*.parquet")):
        fs.put(str(path), f"nostage/in/{path.name}")
    steps = [{"type": "c4_quality", "filter_no_terminal_punct": False}, {"type": "pii"}]

    def job(inp: str, out: str, options: dict[str, str], *, stage_text: bool) -> JobSpec:
        return parse_job(
            {
                "input": {"path": inp, "storage_options": options},
                "output": {"path": out, "storage_options": options},
                "steps": steps,
                "dedup": {"type": "minhash", "stage_text": stage_text},
            }
        )

    on_s3 = run_job(job("s3://nostage/in", "s3://nostage/out", s3_server, stage_text=False))
    local = run_job(job(str(src), str(tmp_path / "staged"), {}, stage_text=True))
    assert on_s3.duplicates == local.duplicates > 0
    for path in sorted((tmp_path / "staged" / "kept").glob("*.parquet")):
        with fs.open(f"nostage/out/kept/{path.name}", "rb") as handle:
            assert pq.read_table(handle).equals(pq.read_table(path)), path.name
