"""report: OUT/report.html from a run's stats, scores, kept languages, dedup clusters and unit timings."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.cli import main
from engine.errors import InputError
from engine.inspect.report import REPORT_FILE, cluster_sizes, language_counts, write_report
from engine.io.paths import list_shards
from engine.runner.executor import SerialExecutor
from engine.runner.run import _write_stats, with_absolute_paths, write_resolved_job
from engine.runner.unit import run_unit
from engine.spec import parse_job
from engine.stats import Stats
from tests.inspect.test_whatif import STEPS, copy_sample, run_units, tiny_run  # noqa: F401  (tiny_run is a fixture)

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
BROWSER_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def sections(page: str) -> list[str]:
    return re.findall(r'<section id="([a-z]+)">', page)


def images(page: str) -> list[bytes]:
    return [base64.b64decode(data) for data in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


@pytest.fixture(scope="module")
def tiny_report(tiny_run: tuple[Path, Path]) -> Path:  # noqa: F811
    """The report of the tiny run (written once for the module: plotting takes a few seconds)."""
    _, out = tiny_run
    url = write_report(str(out), {})
    assert url == f"{out}/{REPORT_FILE}"
    return out / REPORT_FILE


def test_report_of_a_run_with_scores(tiny_run: tuple[Path, Path], tiny_report: Path) -> None:  # noqa: F811
    _, out = tiny_run
    page = tiny_report.read_text()
    stats = json.loads((out / "stats.json").read_text())
    assert sections(page) == ["totals", "conservation", "drops", "scores", "shards"]
    kept, dropped = stats["docs_kept"], stats["docs_dropped"]
    assert f"kept {kept:,} + dropped {dropped:,} + duplicates 0 = 350 = 350 documents read" in page
    assert "conservation holds" in page
    for reason in stats["dropped"]:
        assert reason in page
    # One bar chart of drops, one histogram per score column (8 here), one bar chart of shard timings.
    score_columns = [c for c in pq.read_schema(out / "scores/part-000.parquet").names if "." in c]
    pngs = images(page)
    assert len(pngs) == 1 + len(score_columns) + 1
    assert all(png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000 for png in pngs)
    assert "part-000" in page
    assert "part-001" in page
    assert "<script" not in page.lower()


def test_report_without_scores_skips_the_histograms(tmp_path: Path, sample_dir: Path) -> None:
    src = copy_sample(sample_dir, tmp_path / "in", ("part-003",))
    run_units(src, tmp_path / "out", STEPS, keep_scores=False)
    write_report(str(tmp_path / "out"), {})
    page = (tmp_path / "out" / REPORT_FILE).read_text()
    assert sections(page) == ["totals", "conservation", "drops", "shards"]
    assert len(images(page)) == 2


def dedup_run(root: Path) -> Path:
    """A real run with exact dedup (phases run serially, no Ray) over documents with known duplicates."""
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda".split()
    texts, languages = [], []
    for i in range(12):
        texts.append(" ".join(words[(i + j) % len(words)] + str(i) for j in range(60)))
        languages.append("en" if i % 3 else "fr")
    # Document 0 three more times (a cluster of 4), document 1 once more (a cluster of 2).
    texts += [texts[0]] * 3 + [texts[1]]
    languages += [languages[0]] * 3 + [languages[1]]
    src = root / "in"
    src.mkdir()
    for shard, part in enumerate((slice(0, 8), slice(8, None))):
        table = pa.table(
            {
                "id": [f"d{shard}-{i}" for i in range(len(texts[part]))],
                "text": texts[part],
                "language": languages[part],
            }
        )
        pq.write_table(table, src / f"part-{shard}.parquet")
    raw = {
        "input": {"path": str(src)},
        "output": {"path": str(root / "out")},
        "steps": [{"type": "doc_length", "min_words": 10}],
        "dedup": {"type": "exact", "partitions": 2},
    }
    job = with_absolute_paths(parse_job(raw))
    write_resolved_job(job)
    shards = list_shards(job.input.path, {}, job.input.glob)
    total = Stats()
    for shard in shards:
        total = total + Stats.from_dict(run_unit(job, shard).stats)
    from engine.runner.dedup import run_dedup

    removed = sum(run_dedup(job, [s.rel for s in shards], SerialExecutor()).values())
    total.docs_kept -= removed
    total.duplicates += removed
    total.check_conservation("dedup_run")
    _write_stats(job, total, {})
    return root / "out"


def test_languages_and_duplicate_clusters(tmp_path: Path) -> None:
    out = dedup_run(tmp_path)
    assert language_counts(str(out), {}) == {"en": 8, "fr": 4}
    (sizes,) = cluster_sizes(str(out), {}).values()
    assert sorted(sizes.tolist()) == [2, 4]
    write_report(str(out), {})
    page = (out / REPORT_FILE).read_text()
    assert sections(page) == ["totals", "conservation", "drops", "languages", "dedup", "shards"]
    assert "duplicates 4 = 16 = 16 documents read" in page
    assert "Languages of kept documents (2 languages)" in page
    assert "<td>clusters</td><td>2</td>" in page
    assert "<td>largest cluster</td><td>4</td>" in page


def test_report_needs_a_finished_run(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="holds no finished run"):
        write_report(str(tmp_path), {})


def test_report_command(tmp_path: Path, sample_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = copy_sample(sample_dir, tmp_path / "in", ("part-003",))
    out = tmp_path / "out"
    run_units(src, out, [{"type": "doc_length", "min_words": 80}], keep_scores=False)
    assert main(["report", str(out)]) == 0
    assert (out / REPORT_FILE).exists()
    assert REPORT_FILE in capsys.readouterr().out
    assert main(["report", str(tmp_path / "in")]) == 2


@pytest.mark.skipif(BROWSER is None, reason="no Chromium installed (Debian: apt-get install chromium)")
def test_report_renders_in_a_headless_browser(tiny_report: Path, tmp_path: Path) -> None:
    page_url = tiny_report.resolve().as_uri()
    assert BROWSER is not None
    common = [BROWSER, *BROWSER_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,2000"]
    shot = tmp_path / "shot.png"
    done = subprocess.run(
        [*common, f"--screenshot={shot}", "--enable-logging=stderr", "--v=0", page_url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.read_bytes().startswith(b"\x89PNG")
    assert shot.stat().st_size > 20_000  # a blank 1200x2000 page compresses to far less
    console = [line for line in done.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console
    dom = subprocess.run([*common, "--dump-dom", page_url], capture_output=True, text=True, timeout=120, check=False)
    assert dom.returncode == 0, dom.stderr[-2000:]
    rendered = dom.stdout
    for section in ("totals", "conservation", "drops", "scores", "shards"):
        assert f'id="{section}"' in rendered
    assert rendered.count("data:image/png;base64,") == len(images(tiny_report.read_text()))
    assert "conservation holds" in rendered


def test_histograms_mark_thresholds_and_split_by_the_step(
    tiny_run: tuple[Path, Path],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import numpy as np

    import engine.inspect.report as report_module

    _, out = tiny_run
    calls: dict[str, dict[str, object]] = {}

    def spy(values: np.ndarray, *, title: str, **kwargs: object) -> str:
        calls[title.split(" ")[0]] = {"values": values, **kwargs}
        return "<img>"

    monkeypatch.setattr(report_module, "histogram", spy)
    page = report_module.render(str(out), {})
    # short.{chars,words}, digits.digit_ratio, doc_length.{chars,words}
    assert page.count("<img>") == len(calls) == 5
    assert calls["doc_length.words"]["thresholds"] == [("min_words", 80.0), ("max_words", 3000.0)]
    assert calls["short.chars"]["thresholds"] == [("min_chars", 400.0)]
    assert calls["digits.digit_ratio"]["thresholds"] == [("max_ratio", 0.04)]  # by the end of the score name
    scores = pa.concat_tables(pq.read_table(p) for p in sorted((out / "scores").glob("*.parquet")))
    words = np.asarray(scores["doc_length.words"].to_numpy())
    dropped_here = sum(1 for r in scores["reason"].to_pylist() if r and r.startswith("doc_length/"))
    mask = calls["doc_length.words"]["dropped"]
    assert isinstance(mask, np.ndarray)
    assert len(mask) == int((~np.isnan(words)).sum())
    assert int(mask.sum()) == dropped_here > 0


def test_report_and_what_if_through_fsspec(tiny_run: tuple[Path, Path], memfs: object) -> None:  # noqa: F811
    import fsspec

    from engine.inspect.whatif import what_if

    _, out = tiny_run
    fs = fsspec.filesystem("memory")
    for path in out.rglob("*"):
        if path.is_file() and path.name != REPORT_FILE:
            fs.pipe(f"/run/{path.relative_to(out).as_posix()}", path.read_bytes())
    assert write_report("memory://run", {}) == "memory://run/report.html"
    page = fs.cat("/run/report.html").decode()
    assert sections(page) == ["totals", "conservation", "drops", "scores", "shards"]
    remote = what_if("memory://run", ["doc_length.min_words=150"])
    local = what_if(str(out), ["doc_length.min_words=150"])
    assert (remote.new, remote.moves, remote.files) == (local.new, local.moves, 2)
