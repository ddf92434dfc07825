"""Nightly rebuilds on a real local Ray (issue 11): each change is planned exactly, redone exactly, and the
kept set equals a full rebuild's.

The corpus: 5 shards of 20 real web documents each; shard part-1 holds 5 pages of bad.com, part-3 holds 3.
The job: url_filter with a domain blocklist file (empty at first), then doc_length.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from engine import run_job
from engine.api import plan_job
from engine.cli import main
from engine.errors import RunFailed
from engine.spec import JobSpec, parse_job
from engine.steps.length import DocLength
from tests.conftest import SAMPLE_DIR
from tests.fasttext_fixtures import TINY_CONFIG, TinyModel

pytestmark = pytest.mark.ray

SHARDS = 5
DOCS = 20
BAD = {1: 5, 3: 3}  # shard -> pages of bad.com at its start


def write_shard(folder: Path, index: int, texts: list[str]) -> None:
    urls = [f"bad.com/page-{i}" if i < BAD.get(index, 0) else f"site{index}.example.org/page-{i}" for i in range(DOCS)]
    ids = [f"s{index}-{i}" for i in range(DOCS)]
    pq.write_table(pa.table({"id": ids, "text": texts, "url": urls}), folder / f"part-{index}.parquet")


def sample_texts() -> list[str]:
    texts: list[str] = []
    for path in sorted(SAMPLE_DIR.glob("*.parquet")):
        texts.extend(pq.read_table(path, columns=["text"])["text"].to_pylist())
    return texts


def write_site(src: Path) -> list[str]:
    """The input shards in a new folder `src`; the real texts they were cut from (more follow the first 100)."""
    src.mkdir()
    texts = sample_texts()
    for index in range(SHARDS):
        write_shard(src, index, texts[index * DOCS : (index + 1) * DOCS])
    return texts


@pytest.fixture
def site(tmp_path: Path) -> dict[str, Any]:
    """Input shards, an empty blocklist, and the job (as a dict, to vary it)."""
    src = tmp_path / "in"
    texts = write_site(src)
    blocklist = tmp_path / "blocklist.txt"
    blocklist.write_text("# nightly blocklist\n")
    raw = {
        "name": "nightly",
        "input": {"path": str(src)},
        "output": {"path": str(tmp_path / "out")},
        "steps": [{"type": "url_filter", "domains_file": str(blocklist)}, {"type": "doc_length", "min_words": 50}],
    }
    return {"src": src, "out": tmp_path / "out", "blocklist": blocklist, "raw": raw, "texts": texts, "tmp": tmp_path}


def job_of(raw: dict[str, Any], **changes: Any) -> JobSpec:
    return parse_job({**raw, **changes})


def kept(out: Path) -> set[tuple[str, str]]:
    rows: set[tuple[str, str]] = set()
    for path in (out / "kept").rglob("*.parquet"):
        table = pq.read_table(path, columns=["id", "text"])
        rows.update(zip(table["id"].to_pylist(), table["text"].to_pylist(), strict=True))
    return rows


def full_rebuild(job: JobSpec, tmp: Path) -> set[tuple[str, str]]:
    fresh = tmp / f"fresh-{time.monotonic_ns()}"
    run_job(job.model_copy(update={"output": job.output.model_copy(update={"path": str(fresh)})}))
    return kept(fresh)


def marker_times(out: Path) -> dict[str, int]:
    return {p.name.removesuffix(".marker.json"): p.stat().st_mtime_ns for p in (out / "_units").glob("*.marker.json")}


def redone(before: dict[str, int], after: dict[str, int]) -> list[str]:
    return sorted(rel for rel, mtime in after.items() if before.get(rel) != mtime)


def input_mb(src: Path, names: list[str] | None = None) -> tuple[str, int]:
    sizes = {p.stem: p.stat().st_size for p in src.glob("*.parquet")}
    return f"{sum(sizes.values()) / 1e6:,.1f} MB", sum(sizes[n] for n in names or [])


def share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%"


def headline(src: Path, redo: list[str], *, vanished: int = 0) -> str:
    total_mb, redo_bytes = input_mb(src, redo)
    total_bytes = sum(p.stat().st_size for p in src.glob("*.parquet"))
    shards = len(list(src.glob("*.parquet")))
    gone = f", remove {vanished} vanished" if vanished else ""
    return (
        f"plan for 'nightly': {shards} shards, {total_mb} of input; redo {len(redo)}"
        f" ({share(len(redo), shards)} of shards, {share(redo_bytes, total_bytes)} of bytes),"
        f" reuse {shards - len(redo)}{gone}"
    )


def everything(shards: int = SHARDS) -> list[str]:
    return [f"part-{i}" for i in range(shards)]


def test_changed_blocklist_content_is_planned_redone_and_applied(ray_local: None, site: dict[str, Any]) -> None:
    """The issue's reproduction: `bad.com` written into the same blocklist file; every shard was skipped before."""
    job = job_of(site["raw"])
    run_job(job)
    unchanged = plan_job(job)
    assert unchanged == [
        f"plan for 'nightly': 5 shards, {input_mb(site['src'])[0]} of input; nothing to redo, every shard is reused"
    ]
    os.utime(site["blocklist"], ns=(1, 1))  # touched, not changed: the content decides
    assert plan_job(job) == unchanged

    site["blocklist"].write_text("# nightly blocklist\nbad.com\n")
    change = "list steps[0].domains_file changed (1 entry added, 0 removed)"
    assert plan_job(job) == [
        headline(site["src"], ["part-1", "part-3"]).replace("reuse 3", "re-key 3 (outputs kept), reuse 0"),
        f"  redo         2  {change}: a document of the shard matches a changed entry: part-1, part-3",
        f"  re-key       3  {change}: no document of the shard is affected: part-0, part-2, part-4",
    ]
    before = marker_times(site["out"])
    stats = run_job(job)
    assert redone(before, marker_times(site["out"])) == everything()  # 2 redone, 3 re-keyed (tests/runner/test_lists)
    assert (stats.shards_processed, stats.shards_skipped, stats.shards_rekeyed) == (2, 3, 3)
    assert stats.dropped["url_filter/blocked_domain"] == sum(BAD.values())
    assert not any(doc_id.startswith(("s1-0", "s3-0")) for doc_id, _ in kept(site["out"]))
    assert kept(site["out"]) == full_rebuild(job, site["tmp"])


def test_quality_model_retrained_in_place(
    ray_local: None, site: dict[str, Any], tiny_fasttext_model: TinyModel
) -> None:
    from engine.models.training import train_quality_classifier

    model = site["tmp"] / "quality.bin"
    shutil.copy(tiny_fasttext_model.path, model)
    steps = [*site["raw"]["steps"], {"type": "quality_classifier", "model": str(model), "min_score": 0.5}]
    job = job_of(site["raw"], steps=steps)
    run_job(job)
    first = kept(site["out"])
    # Retrained with the classes swapped, written over the same path: its decisions flip.
    flipped = site["tmp"] / "flipped.bin"
    train_quality_classifier(
        [tiny_fasttext_model.negative_source], [tiny_fasttext_model.positive_source], str(flipped), TINY_CONFIG
    )
    shutil.copy(flipped, model)
    assert plan_job(job) == [
        headline(site["src"], everything()),
        "  redo         5  changed asset steps[2].model: part-0, part-1, part-2, ... (+2)",
    ]
    before = marker_times(site["out"])
    run_job(job)
    assert redone(before, marker_times(site["out"])) == everything()
    assert kept(site["out"]) != first
    assert kept(site["out"]) == full_rebuild(job, site["tmp"])


def test_bumped_step_version_redoes_every_shard(
    ray_local: None, site: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    job = job_of(site["raw"])
    run_job(job)
    current = DocLength.version
    monkeypatch.setattr(DocLength, "version", current + 1)  # the code of doc_length changed its decisions
    assert plan_job(job) == [
        headline(site["src"], everything()),
        f"  redo         5  step steps[1] doc_length: version {current} -> {current + 1}:"
        " part-0, part-1, part-2, ... (+2)",
    ]
    before = marker_times(site["out"])
    run_job(job)
    assert redone(before, marker_times(site["out"])) == everything()
    assert plan_job(job)[0].endswith("nothing to redo, every shard is reused")


def test_new_shards_are_the_only_ones_redone(ray_local: None, site: dict[str, Any]) -> None:
    job = job_of(site["raw"])
    run_job(job)
    for index in (5, 6):
        write_shard(site["src"], index, site["texts"][index * DOCS : (index + 1) * DOCS])
    assert plan_job(job) == [
        headline(site["src"], ["part-5", "part-6"]),
        "  redo         2  new shard: part-5, part-6",
    ]
    before = marker_times(site["out"])
    stats = run_job(job)
    assert redone(before, marker_times(site["out"])) == ["part-5", "part-6"]
    assert (stats.shards_processed, stats.shards_skipped, stats.docs_in) == (2, 5, 7 * DOCS)
    assert kept(site["out"]) == full_rebuild(job, site["tmp"])


def test_vanished_shard_is_planned_and_removed(ray_local: None, site: dict[str, Any]) -> None:
    job = job_of(site["raw"])
    run_job(job)
    (site["src"] / "part-2.parquet").unlink()
    assert plan_job(job) == [
        headline(site["src"], [], vanished=1),
        "  remove       1  vanished shard: its outputs are removed: part-2",
    ]
    before = marker_times(site["out"])
    stats = run_job(job)
    assert redone(before, marker_times(site["out"])) == []
    assert (stats.shards_processed, stats.shards_skipped) == (0, 4)
    assert not (site["out"] / "kept/part-2.parquet").exists()
    assert kept(site["out"]) == full_rebuild(job, site["tmp"])


def test_changed_parameter_and_changed_input_are_named(ray_local: None, site: dict[str, Any]) -> None:
    job = job_of(site["raw"])
    run_job(job)
    write_shard(site["src"], 4, site["texts"][200:220])  # new content for part-4
    assert plan_job(job) == [headline(site["src"], ["part-4"]), "  redo         1  changed input: part-4"]
    steps = [site["raw"]["steps"][0], {"type": "doc_length", "min_words": 60}]
    changed = job_of(site["raw"], steps=steps)
    assert plan_job(changed) == [
        headline(site["src"], everything()),
        "  redo         5  changed parameter steps[1].min_words: 50 -> 60: part-0, part-1, part-2, ... (+2)",
        "  redo         1  changed input: part-4",
    ]
    before = marker_times(site["out"])
    run_job(changed)
    assert redone(before, marker_times(site["out"])) == everything()
    assert kept(site["out"]) == full_rebuild(changed, site["tmp"])


def test_missing_output_file_redoes_its_shard(ray_local: None, site: dict[str, Any]) -> None:
    job = job_of(site["raw"])
    run_job(job)
    (site["out"] / "rejected/part-3.parquet").unlink()
    assert plan_job(job) == [headline(site["src"], ["part-3"]), "  redo         1  output files missing: part-3"]
    before = marker_times(site["out"])
    run_job(job)
    assert redone(before, marker_times(site["out"])) == ["part-3"]


KILLED_UNIT = """
import sys, time
from typing import Literal
import pyarrow as pa
from engine.batch import Verdict
from engine.io.paths import list_shards
from engine.runner.unit import run_unit
from engine.spec import parse_job
from engine.steps.base import Filter, register
import json

@register
class Stall(Filter):
    type: Literal["stall_test"] = "stall_test"
    def __call__(self, batch: pa.Table) -> Verdict:
        if batch.num_rows and batch["id"][0].as_py() != "s3-0":
            time.sleep(600)  # the second batch: the first one's rows are already in temporary files
        return Verdict.keep_all(batch.num_rows)

raw = json.loads(sys.argv[1])
raw["steps"].append({"type": "stall_test"})
raw["input"]["batch_rows"] = 8
raw["output"]["row_group_rows"] = 1  # every batch's rows go to the files at once (not buffered into row groups)
job = parse_job(raw)
(shard,) = [s for s in list_shards(job.input.path, {}, job.input.glob) if s.rel == "part-3"]
run_unit(job, shard)
"""


def test_killed_unit_is_redone_and_its_temporary_files_removed(ray_local: None, site: dict[str, Any]) -> None:
    job = job_of(site["raw"])
    run_job(job)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(KILLED_UNIT), json.dumps(site["raw"])], env=env)
    try:
        deadline = time.monotonic() + 120
        while not list((site["out"] / "_tmp").rglob("*.tmp-*")) and time.monotonic() < deadline:
            assert child.poll() is None, "the unit ended before it could be killed"
            time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    leftovers = list((site["out"] / "_tmp").rglob("*.tmp-*"))
    assert leftovers, "the killed unit left no temporary file"
    # The killed unit had dropped its marker before writing: its old outputs may be half replaced.
    assert plan_job(job) == [
        headline(site["src"], ["part-3"]),
        "  redo         1  not finished by the last run (no marker): part-3",
    ]
    run_job(job)
    assert not list(site["out"].rglob("*.tmp-*"))
    assert kept(site["out"]) == full_rebuild(job, site["tmp"])


def test_plan_and_run_from_the_command_line(
    ray_local: None, site: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    job_file = site["tmp"] / "nightly.yaml"
    job_file.write_text(yaml.safe_dump(site["raw"]))
    assert main(["run", str(job_file), "--quiet"]) == 0
    first = capsys.readouterr().out
    assert first.startswith(headline(site["src"], everything()) + "\n  redo         5  new shard: part-0, part-1")
    assert "counted in the files' Parquet footers: 100 rows read = " in first
    write_shard(site["src"], 5, site["texts"][100:120])
    assert main(["plan", str(job_file)]) == 0
    planned = capsys.readouterr().out
    assert planned == f"{headline(site['src'], ['part-5'])}\n  redo         1  new shard: part-5\n"
    assert main(["run", str(job_file), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(planned)
    assert "shards: 1 processed, 5 skipped of 6" in out


def test_failed_shard_in_a_dedup_job_says_kept_waits(
    ray_local: None, site: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    (site["src"] / "part-2.parquet").write_bytes(b"not parquet")
    raw = {**site["raw"], "dedup": {"type": "minhash"}}
    job_file = site["tmp"] / "dedup.yaml"
    job_file.write_text(yaml.safe_dump(raw))
    assert main(["run", str(job_file), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "dedup (and so kept/) waits for every shard, so this run wrote nothing to kept/" in err
    assert "part-2.parquet is not a readable Parquet file" in err
    assert "reusable by the next run" not in err
    stats = json.loads((site["out"] / "stats.json").read_text())
    assert stats["docs_kept"] is None
    assert stats["docs_staged"] > 0
    assert stats["dedup"] == "not run: dedup waits for every shard (1 failed); kept/ holds nothing of this run"
    assert not (site["out"] / "kept").exists()
    report = (site["out"] / "report.html").read_text()
    assert "none yet: not run: dedup waits for every shard" in report
    with pytest.raises(RunFailed):
        run_job(parse_job(raw))
