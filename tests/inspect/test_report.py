"""report: OUT/report.html from stats.json (scores, languages, timings as counted bins) and the dedup clusters."""

from __future__ import annotations

import base64
import html
import json
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from xml.etree import ElementTree

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.cli import main
from engine.errors import InputError
from engine.histograms import count_bins, decode_named
from engine.inspect.plots import THRESHOLD_COLOUR
from engine.inspect.report import REPORT_FILE, write_report
from engine.io.paths import list_shards
from engine.runner.executor import SerialExecutor
from engine.runner.run import _write_stats, with_absolute_paths, write_resolved_job
from engine.runner.unit import run_unit
from engine.spec import parse_job
from engine.stats import Stats
from engine.steps.presets import expand_preset
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
    return [base64.b64decode(data) for data in re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', page)]


def svg_root(svg: bytes) -> ElementTree.Element:
    """The parsed SVG document (parsing fails on malformed XML: a browser would show a broken image)."""
    root = ElementTree.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    return root


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
    # One bar chart of drops, one histogram per score counted in more than one bin, one of shard timings.
    score_columns = [c for c in pq.read_schema(out / "scores/part-000.parquet").names if "." in c]
    counted = decode_named(stats["score_bins"])
    assert sorted(counted) == sorted(score_columns)
    plotted = [name for name, bins in counted.items() if len(bins) > 1]
    svgs = images(page)
    assert len(svgs) == 1 + len(plotted) + 1
    assert all(len(svg_root(svg).findall(".//{http://www.w3.org/2000/svg}rect")) >= 2 for svg in svgs)  # page, bars
    assert "part-000" in page
    assert "part-001" in page
    assert "<script" not in page.lower()


def test_report_without_the_score_sidecar_still_has_every_histogram(tmp_path: Path, sample_dir: Path) -> None:
    """The histograms come from the counted bins in stats.json, not from scores/ (issue 14)."""
    src = copy_sample(sample_dir, tmp_path / "in", ("part-003",))
    run_units(src, tmp_path / "out", STEPS, keep_scores=False)
    write_report(str(tmp_path / "out"), {})
    page = (tmp_path / "out" / REPORT_FILE).read_text()
    assert not (tmp_path / "out" / "scores").exists()
    assert sections(page) == ["totals", "conservation", "drops", "scores", "shards"]
    titles = [title for title, _, _ in histogram_images(page)]
    assert {"short.chars", "doc_length.words"} <= {t.split("\n")[0] for t in titles}


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

    outcome = run_dedup(job, [s.rel for s in shards], SerialExecutor())
    removed = sum(outcome.removed().values())
    total.docs_kept -= removed
    total.duplicates += removed
    total.cluster_sizes.update(outcome.cluster_sizes)  # as run.py does: the dedup tasks' fixed-bin counters
    total.largest_cluster = outcome.largest_cluster
    total.check_conservation("dedup_run")
    _write_stats(job, total, {})
    return root / "out"


def test_languages_and_duplicate_clusters(tmp_path: Path) -> None:
    out = dedup_run(tmp_path)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["languages"] == {"en": 9, "fr": 7}  # kept by the steps: 16 documents, 4 of them duplicates
    assert stats["cluster_sizes"] == {"2": 1, "4": 1}
    assert stats["largest_cluster"] == 4
    shutil.rmtree(out / "_dedup")  # the report reads stats.json's counters, never dedup's files
    write_report(str(out), {})
    page = (out / REPORT_FILE).read_text()
    assert sections(page) == ["totals", "conservation", "drops", "scores", "languages", "dedup", "shards"]
    assert "duplicates 4 = 16 = 16 documents read" in page
    assert "Languages of kept documents (2 languages)" in page
    assert "Counted before dedup: 4 duplicates were then removed." in page
    assert "<td>clusters</td><td>2</td>" in page
    assert "<th>kept by the steps (before dedup)</th>" in page  # unit stats count documents before dedup
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


def threshold_pixels(png: bytes) -> int:
    """Pixels of the threshold colour in a screenshot (dashed lines, labels and edge arrows are drawn in it)."""
    import io

    import matplotlib.image as mpimg
    import numpy as np

    pixels = np.asarray(mpimg.imread(io.BytesIO(png), format="png"))[..., :3] * 255
    red, green, blue = (pixels[..., i] for i in range(3))
    # The threshold colour, antialiased into white: red well above green, green close to blue (the orange and teal
    # bars, black text and grey axes all fail one of these).
    assert THRESHOLD_COLOUR == "#e45756"
    return int(((red > 150) & (red - green > 50) & (np.abs(green - blue) < 30)).sum())


def threshold_marks(svg: bytes) -> int:
    """Elements of a plot drawn in the threshold colour (lines, arrow heads, labels) inside its canvas."""
    root = svg_root(svg)
    width, height = float(root.attrib["width"]), float(root.attrib["height"])
    marks = 0
    for element in root.iter():
        if THRESHOLD_COLOUR not in (element.attrib.get("stroke"), element.attrib.get("fill")):
            continue
        xs = [float(element.attrib[a]) for a in ("x", "x1", "x2") if a in element.attrib]
        ys = [float(element.attrib[a]) for a in ("y", "y1", "y2") if a in element.attrib]
        for point in element.attrib.get("points", "").split():
            x, y = point.split(",")
            xs.append(float(x))
            ys.append(float(y))
        marks += all(0 <= x <= width for x in xs) and all(0 <= y <= height for y in ys)
    return marks


def histogram_images(page: str) -> list[tuple[str, str, bytes]]:
    """(title, thresholds, SVG) of every histogram on a page."""
    found = re.findall(
        r'<img alt="histogram: ([^"]*)" data-thresholds="([^"]*)"[^>]*src="data:image/svg\+xml;base64,([^"]+)"', page
    )
    return [(html.unescape(title), html.unescape(marks), base64.b64decode(data)) for title, marks, data in found]


@pytest.fixture(scope="module")
def fineweb_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """The report of the FineWeb preset run over the whole sample (no dedup), and its score columns."""
    from tests.conftest import SAMPLE_DIR

    root = tmp_path_factory.mktemp("fineweb-report")
    src = copy_sample(SAMPLE_DIR, root / "in", tuple(f"part-00{i}" for i in range(4)))
    run_units(src, root / "out", expand_preset("fineweb"))
    write_report(str(root / "out"), {})
    columns = [c for c in pq.read_schema(root / "out/scores/part-000.parquet").names if "." in c]
    return root / "out" / REPORT_FILE, columns


def test_every_threshold_is_drawn_on_its_histogram_12(fineweb_report: tuple[Path, list[str]]) -> None:
    """Issue 12: 9 of 31 histograms had their thresholds; every bound a step declares is drawn now."""
    import numpy as np

    report, columns = fineweb_report
    page = report.read_text()
    job = parse_job({"input": {"path": "x"}, "output": {"path": "y"}, "preset": "fineweb"})
    steps = {step.label: step for step in job.steps}
    scores = pa.concat_tables(pq.read_table(f) for f in sorted(report.parent.glob("scores/*.parquet")))
    drawn = {title.split("\n")[0]: (marks, png) for title, marks, png in histogram_images(page)}
    constant = []
    for column in columns:
        label, _, score = column.partition(".")
        values = scores[column]
        if not pa.types.is_floating(values.type):
            continue
        finite = np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64)
        finite = finite[np.isfinite(finite)]
        expected = " ".join(f"{p}={v:g}" for p, v in steps[label].thresholds().get(score, []))
        if len(count_bins(finite)) <= 1:
            constant.append(column)
            assert column not in drawn
            assert f"<td>{column}</td>" in page  # listed with its single bin instead
            continue
        marks, svg = drawn[column]
        assert marks == expected, column
        if expected:
            assert threshold_marks(svg) >= 2, f"{column}: no threshold marker drawn"  # a line and its label
        else:
            assert threshold_marks(svg) == 0, column
    with_marks = [c for c, (marks, _) in drawn.items() if marks]
    assert len(with_marks) >= 25  # every ratio of gopher, fineweb and c4, the n-gram fractions, language score
    assert "url_filter.soft_banned_words" in constant or "url_filter.soft_banned_words" in with_marks
    assert "gopher_quality.words" in with_marks
    assert drawn["gopher_quality.words"][0] == "min_doc_words=50 max_doc_words=100000"


def test_long_tails_are_cut_and_the_page_says_so() -> None:
    import numpy as np

    from engine.histograms import bin_edges
    from engine.inspect.plots import binned_histogram

    values = np.concatenate([np.random.default_rng(0).normal(10, 1, 1000), [500.0, 800.0, 900.0]])
    thresholds = [("max_score", 12.0), ("min_score", -400.0)]
    img = binned_histogram(count_bins(values), title="x.score", edges=bin_edges, thresholds=thresholds)
    title = html.unescape(re.search(r'alt="histogram: ([^"]*)"', img).group(1))  # type: ignore[union-attr]
    assert "axis cut at the 99.5th percentile" in title
    assert "3 above, max 1024" in title  # the upper edge of 900's bin
    assert 'data-cut="' in img
    svg = svg_root(base64.b64decode(re.search(r"base64,([^\"]+)", img).group(1)))  # type: ignore[union-attr]
    texts = ["".join(t.itertext()) for t in svg.iter("{http://www.w3.org/2000/svg}text")]
    assert "max_score=12" in texts  # in view: a dashed line
    assert "min_score=-400 (off the axis)" in texts  # far off: an arrow at the left edge
    assert len(svg.findall(".//{http://www.w3.org/2000/svg}polygon[@class='threshold']")) == 1


def test_one_language_is_singular(tmp_path: Path, sample_dir: Path) -> None:
    src = copy_sample(sample_dir, tmp_path / "in", ("part-001",))
    run_units(src, tmp_path / "out", [{"type": "language_id", "languages": ["en"], "partition_by_language": True}])
    write_report(str(tmp_path / "out"), {})
    page = (tmp_path / "out" / REPORT_FILE).read_text()
    assert "Languages of kept documents (1 language)" in page


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
    assert rendered.count("data:image/svg+xml;base64,") == len(images(tiny_report.read_text()))
    assert "conservation holds" in rendered


@pytest.mark.skipif(BROWSER is None, reason="no Chromium installed (Debian: apt-get install chromium)")
def test_every_histogram_with_a_threshold_shows_a_marker_in_the_browser(
    fineweb_report: tuple[Path, list[str]], tmp_path: Path
) -> None:
    """The page as Chromium renders it: every histogram whose step has a threshold for its score shows one."""
    report, _ = fineweb_report
    assert BROWSER is not None
    common = [BROWSER, *BROWSER_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,2000"]
    dom = subprocess.run(
        [*common, "--dump-dom", report.resolve().as_uri()], capture_output=True, text=True, timeout=120, check=False
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    histograms = histogram_images(dom.stdout)
    assert len([marks for _, marks, _ in histograms if marks]) >= 25
    # Every histogram as Chromium draws it, one below the other at known offsets, in one screenshot.
    heights = [int(float(svg_root(svg).attrib["height"])) for _, _, svg in histograms]
    tops = [sum(heights[:i]) for i in range(len(heights))]
    images_html = "".join(
        f'<img style="position:absolute;left:0;top:{top}px" src="data:image/svg+xml;base64,{encoded}">'
        for top, encoded in zip(tops, (base64.b64encode(svg).decode() for _, _, svg in histograms), strict=True)
    )
    (tmp_path / "all.html").write_text(f'<html><body style="margin:0">{images_html}</body></html>')
    shot = tmp_path / "all.png"
    done = subprocess.run(
        [*common[:-1], f"--window-size=440,{sum(heights)}", f"--screenshot={shot}", (tmp_path / "all.html").as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    import io

    import matplotlib.image as mpimg

    pixels = mpimg.imread(io.BytesIO(shot.read_bytes()), format="png")
    for top, height, (title, marks, _) in zip(tops, heights, histograms, strict=True):
        crop = io.BytesIO()
        mpimg.imsave(crop, pixels[top : top + height], format="png")
        drawn = threshold_pixels(crop.getvalue())
        if marks:
            assert drawn > 20, f"{title}: no threshold marker"
        else:
            assert drawn == 0, title


def test_histograms_mark_thresholds_and_split_by_the_step(
    tiny_run: tuple[Path, Path],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The counted bins hold exactly the sidecar's values, binned: all that reached the step, and those it dropped."""
    import numpy as np

    import engine.inspect.report as report_module

    _, out = tiny_run
    calls: dict[str, dict[str, object]] = {}

    def spy(bins: dict[str, int], *, title: str, **kwargs: object) -> str:
        calls[title.split(" ")[0]] = {"bins": bins, **kwargs}
        return "<img>"

    monkeypatch.setattr(report_module, "binned_histogram", spy)
    page = report_module.render(str(out), {})
    # short.{chars,words}, digits.digit_ratio, doc_length.{chars,words}, and seconds per shard
    assert page.count("<img>") == len(calls) == 6
    assert calls["doc_length.words"]["thresholds"] == [("min_words", 80.0), ("max_words", 3000.0)]
    assert calls["short.chars"]["thresholds"] == [("min_chars", 400.0)]
    assert calls["digits.digit_ratio"]["thresholds"] == [("max_ratio", 0.04)]  # declared: Decides(("digit_ratio",))
    scores = pa.concat_tables(pq.read_table(p) for p in sorted((out / "scores").glob("*.parquet")))
    reasons = scores["reason"].to_pylist()
    for name in ("short.chars", "digits.digit_ratio", "doc_length.words"):
        values = np.asarray(scores[name].to_numpy(zero_copy_only=False), dtype=np.float64)
        dropped_here = np.asarray([bool(r) and r.startswith(name.split(".")[0] + "/") for r in reasons])
        assert calls[name]["bins"] == count_bins(values), name
        assert calls[name]["dropped"] == count_bins(values[dropped_here]), name
        assert sum(calls[name]["dropped"].values()) == int(dropped_here.sum()) > 0  # type: ignore[attr-defined]


def test_report_reads_no_corpus_file(tiny_run: tuple[Path, Path], tmp_path: Path) -> None:  # noqa: F811
    """With kept/, rejected/, scores/ and every unit's stats deleted, the page is the same: it reads stats.json."""
    _, out = tiny_run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    before = re.sub(r"generated [^<]*", "", _render(copy))
    for area in ("kept", "rejected", "scores"):
        shutil.rmtree(copy / area)
    for path in (copy / "_units").rglob("*.json"):
        path.unlink()
    after = re.sub(r"generated [^<]*", "", _render(copy))
    assert after == before
    assert sections(after) == ["totals", "conservation", "drops", "scores", "shards"]


def _render(out: Path) -> str:
    from engine.inspect.report import render

    return render(str(out), {}).replace(str(out), "OUT")


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


def test_stats_json_does_not_grow_with_the_corpus(tmp_path: Path, sample_dir: Path) -> None:
    """Six times the shards and documents: the same histogram bins, the slowest-shard list capped (issue 14)."""
    sizes = {}
    for copies in (1, 6):
        src = tmp_path / f"in-{copies}"
        src.mkdir()
        table = pq.read_table(sample_dir / "part-003.parquet")
        for index in range(copies):
            pq.write_table(table, src / f"part-{index:03d}.parquet")
        run_units(src, tmp_path / f"out-{copies}", STEPS, keep_scores=False)
        stats = json.loads((tmp_path / f"out-{copies}" / "stats.json").read_text())
        assert stats["docs_in"] == copies * table.num_rows
        sizes[copies] = stats
    one, six = sizes[1], sizes[6]
    one_bins, six_bins = Stats.from_dict(one).score_bins, Stats.from_dict(six).score_bins
    assert {k: sorted(v) for k, v in one_bins.items()} == {k: sorted(v) for k, v in six_bins.items()}
    assert six_bins["doc_length.words"] == {k: 6 * v for k, v in one_bins["doc_length.words"].items()}
    assert len(six["slowest_shards"]) == 6 <= 10
    assert len(json.dumps(six)) < 1.3 * len(json.dumps(one))


def test_drop_rate_per_language_counts_every_drop_once_its_language_is_known(tmp_path: Path, sample_dir: Path) -> None:
    src = copy_sample(sample_dir, tmp_path / "in", ("part-001",))
    steps = [{"type": "language_id", "languages": ["en"], "min_score": 0.5}, {"type": "doc_length", "min_words": 80}]
    run_units(src, tmp_path / "out", steps)
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    by_language: Counter[str] = Counter()
    for key, n in stats["dropped_by_language"].items():
        language, reason = key.split(" ", 1)
        by_language[reason] += n
    step_drops = {reason: n for reason, n in stats["dropped"].items() if not reason.startswith("input/")}
    assert dict(by_language) == step_drops  # the step that labels a row attributes its own drops too
    assert any(key.startswith("en doc_length/") for key in stats["dropped_by_language"])
    write_report(str(tmp_path / "out"), {})
    page = (tmp_path / "out" / REPORT_FILE).read_text()
    assert "<h3>Drop rate per language</h3>" in page
    en = stats["languages"]["en"]
    en_dropped = sum(n for key, n in stats["dropped_by_language"].items() if key.startswith("en "))
    assert f"<td>en</td><td>{en}</td><td>{en_dropped}</td><td>{100 * en_dropped / (en + en_dropped):.1f}%</td>" in page
