"""`run --full` (issue 11 item 3): a full rebuild redoes every unit and every dedup phase, keeps the build order,
and its kept set equals the incremental nights' one, document for document, under every `keep` policy.

Real local Ray, real files. Night 1 publishes shards p-5..p-8; night 2 adds p-10 and p-11 (their names sort
before the old ones), changes p-6 and removes p-7. Near-copies of real web pages cross the shards: a longer,
higher-scored copy of p-5's first page arrives in p-10 (`longest` / `highest_score` swap to it, `first_seen`
keeps p-5's); p-7's first page has a copy in p-11 that survives p-7's removal; the changed p-6 brings a copy of
p-8's first page (p-6 keeps its build, so its copy comes first in build order).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from engine import run_job
from engine.api import plan_job
from engine.cli import main
from engine.dedup import index
from engine.spec import JobSpec, parse_job
from tests.conftest import SAMPLE_DIR

pytestmark = pytest.mark.ray

DOCS = 6
SUMMARY = {"stats.json", "report.html", "job.resolved.yaml"}
"""What every run rewrites at the output's top level (the run's summary): not part of the comparison."""


def texts() -> list[str]:
    found: list[str] = []
    for path in sorted(SAMPLE_DIR.glob("*.parquet")):
        found.extend(t for t in pq.read_table(path, columns=["text"])["text"].to_pylist() if len(t.split()) > 150)
    return found


def longer(text: str) -> str:
    """A near-copy, a little longer (still in the same MinHash cluster)."""
    return text + " Updated with one more closing sentence for readers."


def write(src: Path, rel: str, rows: list[tuple[str, float]]) -> None:
    ids = [f"{rel}-{i}" for i in range(len(rows))]
    table = pa.table({"id": ids, "text": [t for t, _ in rows], "score": [s for _, s in rows]})
    pq.write_table(table, src / f"{rel}.parquet")


def night_one(src: Path, pages: list[str]) -> None:
    src.mkdir()
    for n, rel in enumerate(["p-5", "p-6", "p-7", "p-8"]):
        write(src, rel, [(pages[n * DOCS + i], 0.5) for i in range(DOCS)])


def night_two(src: Path, pages: list[str]) -> None:
    """+2 new shards sorting first, p-6 changed, p-7 removed."""
    fresh = 4 * DOCS
    write(src, "p-10", [(longer(pages[0]), 0.9), *((pages[fresh + i], 0.5) for i in range(DOCS - 1))])
    write(src, "p-11", [(pages[2 * DOCS], 0.5), *((pages[fresh + DOCS + i], 0.5) for i in range(DOCS - 1))])
    changed = [(pages[3 * DOCS], 0.7), *((pages[fresh + 2 * DOCS + i], 0.5) for i in range(DOCS - 1))]
    write(src, "p-6", changed)
    (src / "p-7.parquet").unlink()


def job_for(tmp: Path, keep: str) -> JobSpec:
    dedup: dict[str, Any] = {"type": "minhash", "keep": keep}
    if keep == "highest_score":
        dedup["score_column"] = "score"
    return parse_job(
        {
            "name": "nightly",
            "input": {"path": str(tmp / "in")},
            "output": {"path": str(tmp / "out")},
            "steps": [{"type": "doc_length", "min_words": 50}],
            "dedup": dedup,
        }
    )


def kept(out: Path) -> list[tuple[str, str, float]]:
    rows: list[tuple[str, str, float]] = []
    for path in sorted((out / "kept").rglob("*.parquet")):
        table = pq.read_table(path, columns=["id", "text", "score"])
        rows.extend(zip(table["id"].to_pylist(), table["text"].to_pylist(), table["score"].to_pylist(), strict=True))
    return sorted(rows)


def files(out: Path) -> dict[str, int]:
    """Every file of the output but the run's summary: its mtime."""
    return {
        str(p.relative_to(out)): p.stat().st_mtime_ns
        for p in out.rglob("*")
        if p.is_file() and str(p.relative_to(out)) not in SUMMARY
    }


def not_rebuilt(names: dict[str, int]) -> set[str]:
    """What a full rebuild keeps as it is: the build order (`registry.json`) and the job's config records
    (`_units/_keys/<digest>.json`: content-addressed, written once)."""
    return {n for n in names if n.endswith("/state/registry.json") or n.startswith("_units/_keys/")}


def rewritten(before: dict[str, int], after: dict[str, int]) -> set[str]:
    return {name for name, mtime in after.items() if before.get(name) != mtime}


def manifest(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(next(out.glob("_dedup/*/state/index/manifest.json")).read_text())
    return data


@pytest.mark.parametrize("keep", ["first_seen", "longest", "highest_score"])
def test_full_rebuild_equals_the_incremental_nights_and_rewrites_everything(
    ray_local: None, tmp_path: Path, keep: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pages = texts()
    assert len(pages) >= 7 * DOCS
    src, out = tmp_path / "in", tmp_path / "out"
    job = job_for(tmp_path, keep)
    night_one(src, pages)
    run_job(job)
    night_two(src, pages)
    # Two of four shards changed or vanished: far above the default share of dead documents (a full build);
    # allowed here, so that the night is an incremental one.
    monkeypatch.setattr(index, "DEAD_SHARE", 1.0)
    assert plan_job(job)[-1] == (
        "  dedup: night: 2 new, 1 changed and 1 vanished shard(s) against the band index of 4 shards: new rows"
        " probed, clusters that held a changed or vanished shard's documents clustered again; fates and removal"
        " redone only where duplicates change"
    )
    stats = run_job(job)  # the incremental night
    monkeypatch.undo()
    state = manifest(out)
    assert [run["dead"] for run in state["runs"]] == [[1, 2], []]  # p-6's old rows and p-7's, under the base
    assert state["shards"][2] == "\x00vanished:p-7"
    # p-8's first page leaves kept/ for the changed p-6's copy (earlier in build order); p-5's for p-10's better
    # copy unless `first_seen`; p-7's page had no old copy (its new one in p-11 is kept): nothing returns.
    assert stats.churn["better_copy"] == (1 if keep == "first_seen" else 2)
    assert stats.churn["left_kept"] == stats.churn["better_copy"]
    assert stats.churn["returned_to_kept"] == 0
    incremental = kept(out)
    ids = {row[0] for row in incremental}
    assert not any(i.startswith("p-7-") for i in ids)  # the removed shard left kept/
    assert "p-11-0" in ids  # p-7's page: its copy is kept once p-7 is gone
    assert ("p-10-0" in ids) == (keep != "first_seen")  # the better copy replaces p-5's only if the policy says so
    assert ("p-5-0" in ids) == (keep == "first_seen")
    assert "p-6-0" in ids
    assert "p-8-0" not in ids
    registry = next(out.glob("_dedup/*/state/registry.json")).read_text()
    assert json.loads(registry)["first_seen"] == {"p-10": 2, "p-11": 2, "p-5": 1, "p-6": 1, "p-8": 1}

    before = files(out)
    stats = run_job(job, full=True)
    assert stats.shards_processed == 5
    assert stats.shards_skipped == 0
    assert kept(out) == incremental  # document for document
    after = files(out)
    assert rewritten(before, after) == set(after) - not_rebuilt(after)  # every file rewritten
    assert len(not_rebuilt(after)) == 2
    assert next(out.glob("_dedup/*/state/registry.json")).read_text() == registry
    for area in ("kept", "_stage", "_units"):
        assert any(name.startswith(area + "/") for name in after), area
    assert any("/state/fates/" in name for name in after)
    assert any("/state/removal/" in name for name in after)

    stats = run_job(job)  # a plain rerun after it reuses everything
    assert stats.shards_processed == 0
    assert stats.shards_skipped == 5
    assert rewritten(after, files(out)) == set()
    assert kept(out) == incremental


def test_full_rebuild_from_the_cli_plans_and_redoes_every_shard(
    ray_local: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`plan --full` lists every shard with reason `--full` and the dedup redone; `plan` alone says nothing to
    redo; `run --full` redoes what it said; the kept set is the one before."""
    pages = texts()
    src, out = tmp_path / "in", tmp_path / "out"
    night_one(src, pages)
    job_file = tmp_path / "job.yaml"
    job_file.write_text(yaml.safe_dump(job_for(tmp_path, "first_seen").model_dump(mode="json", exclude_none=True)))
    assert main(["run", str(job_file), "--quiet"]) == 0
    published = kept(out)
    capsys.readouterr()
    assert main(["plan", str(job_file)]) == 0
    assert "nothing to redo" in capsys.readouterr().out
    assert main(["plan", str(job_file), "--full"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "redo 4 (100.0% of shards, 100.0% of bytes), reuse 0" in lines[0]
    assert lines[1].split() == ["redo", "4", "--full:", "p-5,", "p-6,", "p-7,", "...", "(+1)"]
    assert lines[2] == "  dedup: every global phase and every shard's removal is redone over all 4 shards (--full)"
    before = files(out)
    assert main(["run", str(job_file), "--quiet", "--full"]) == 0
    printed = capsys.readouterr().out
    assert "shards: 4 processed, 0 skipped of 4" in printed
    assert printed.startswith("\n".join(lines))  # run prints the same plan first
    assert rewritten(before, files(out)) == set(before) - not_rebuilt(before)
    assert kept(out) == published


def test_full_rebuild_removes_vanished_shards(ray_local: None, tmp_path: Path) -> None:
    """A shard gone from the input since the last run leaves kept/ under --full too."""
    pages = texts()
    src, out = tmp_path / "in", tmp_path / "out"
    job = job_for(tmp_path, "first_seen")
    night_one(src, pages)
    run_job(job)
    (src / "p-8.parquet").unlink()
    assert any("vanished" in line for line in plan_job(job, full=True))
    run_job(job, full=True)
    assert not [p for p in (out / "kept").rglob("*") if "p-8" in p.name]
    assert {row[0].rsplit("-", 1)[0] for row in kept(out)} == {"p-5", "p-6", "p-7"}


def test_plan_says_whether_dedup_is_a_night_or_a_full_rebuild_and_run_does_it(ray_local: None, tmp_path: Path) -> None:
    """New shards only: `plan` announces a night over the band index and `run` makes one (only the new shard's
    kept/ file is written, the kept set equals `--full`'s); a vanished shard of five (20% of the index dead):
    `plan` says every global phase reruns, and why."""
    pages = texts()
    src, out = tmp_path / "in", tmp_path / "out"
    job = job_for(tmp_path, "first_seen")
    night_one(src, pages)
    run_job(job)
    before = files(out)
    write(src, "p-9", [(pages[0], 0.5), *((pages[5 * DOCS + i], 0.5) for i in range(DOCS - 1))])
    assert plan_job(job)[-1] == (
        "  dedup: night: 1 new shard(s) probed against the band index of 4 shards;"
        " fates and removal redone only where duplicates change"
    )
    run_job(job)
    changed = {name for name in rewritten(before, files(out)) if name.startswith("kept/")}
    assert changed == {"kept/p-9.parquet"}
    nightly = kept(out)
    assert "p-9-0" not in {row[0] for row in nightly}  # a copy of p-5's first page, published before
    assert "unchanged" in plan_job(job)[-1]
    (src / "p-7.parquet").rename(tmp_path / "p-7.parquet")
    assert plan_job(job)[-1].startswith(
        "  dedup: every global phase reruns over all 4 shards (1 changed or vanished shard(s): 20.0% of the band"
        " index would be dead (> 5%))"
    )
    (tmp_path / "p-7.parquet").rename(src / "p-7.parquet")  # back as it was
    assert "unchanged" in plan_job(job)[-1]
    run_job(job, full=True)
    assert kept(out) == nightly
