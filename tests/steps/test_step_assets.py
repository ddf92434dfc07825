"""Steps declare the files they read (issue 11), and a file replaced at the same path is read again in-process."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import fsspec
import pyarrow as pa

from engine.io.assets import forget_versions
from engine.models.loader import default_lid_model, load_model
from engine.steps.base import build_step
from engine.steps.c4 import BADWORDS_LANGUAGES
from tests.fasttext_fixtures import TINY_CONFIG, TinyModel, train_tiny_model


def test_steps_declare_the_files_they_read(tmp_path: Path, tiny_fasttext_model: TinyModel) -> None:
    url = build_step({"type": "url_filter", "domains_file": "d.txt", "urls_file": "u.txt"}).assets()
    assert (url["domains_file"], url["urls_file"]) == ("d.txt", "u.txt")
    assert {k for k in url if k.startswith("shipped/")} == {
        "shipped/banned_words.txt",
        "shipped/banned_subwords.txt",
        "shipped/soft_banned_words.txt",
    }
    assert all(Path(url[k]).is_file() for k in url if k.startswith("shipped/"))
    assert build_step({"type": "url_filter", "use_integrated_lists": False}).assets() == {}
    assert build_step({"type": "language_id"}).assets() == {"model": default_lid_model()}
    quality = build_step({"type": "quality_classifier", "model": tiny_fasttext_model.path})
    assert quality.assets() == {"model": tiny_fasttext_model.path}
    badwords = build_step({"type": "c4_badwords"}).assets()
    assert len(badwords) == len(BADWORDS_LANGUAGES)
    assert all(Path(p).is_file() for p in badwords.values())
    assert build_step({"type": "gopher_quality"}).assets() == {}


def test_replaced_blocklist_is_read_again_by_the_same_process(
    tmp_path: Path, tiny_batch: Callable[..., pa.Table]
) -> None:
    """Ray reuses worker processes across runs: a cache keyed on the path alone would keep the old list."""
    blocklist = tmp_path / "domains.txt"
    blocklist.write_text("other.org\n")
    step = build_step({"type": "url_filter", "domains_file": str(blocklist)})
    batch = tiny_batch(["a page", "another page"], url=["https://bad.com/x", "https://good.com/y"])
    assert step(batch).keep.tolist() == [True, True]
    blocklist.write_text("bad.com\n")
    assert step(batch).keep.tolist() == [False, True]


def test_blocklist_from_an_fsspec_url(memfs: fsspec.AbstractFileSystem, tiny_batch: Callable[..., pa.Table]) -> None:
    memfs.pipe("/lists/domains.txt", b"# UT1 extract\nbad.com\n")
    step = build_step({"type": "url_filter", "domains_file": "memory://lists/domains.txt"})
    step.check()
    batch = tiny_batch(["a page", "another page"], url=["https://bad.com/x", "https://good.com/y"])
    forget_versions()
    assert step(batch).reason.tolist() == ["blocked_domain", None]
    memfs.pipe("/lists/domains.txt", b"good.com\n")
    forget_versions()  # what every unit does when it starts
    assert step(batch).reason.tolist() == [None, "blocked_domain"]


def test_model_replaced_at_the_same_url_is_fetched_again(
    tmp_path: Path, memfs: fsspec.AbstractFileSystem, tiny_fasttext_model: TinyModel
) -> None:
    url = "memory://models/quality.bin"
    memfs.pipe("/models/quality.bin", Path(tiny_fasttext_model.path).read_bytes())
    forget_versions()
    first = load_model(url)
    other = train_tiny_model(tmp_path / "other", TINY_CONFIG.model_copy(update={"dim": 8}))
    shutil.copy(other.path, tmp_path / "copy.bin")
    memfs.pipe("/models/quality.bin", (tmp_path / "copy.bin").read_bytes())
    assert load_model(url) is first  # within a unit: no request per batch
    forget_versions()
    assert load_model(url) is not first
    assert load_model(url).get_dimension() == 8
