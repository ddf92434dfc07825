"""The cached fastText loader: one model per process, URLs copied once, clear errors at validate time."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

from engine.errors import SpecError
from engine.models import loader as fasttext_loader
from engine.models.loader import check_model, clear_cache, default_lid_model, load_model, model_labels
from engine.steps.language_id import LanguageId
from engine.steps.quality import QualityClassifier
from tests.fasttext_fixtures import TinyModel, tiny_fasttext_model  # noqa: F401


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts with no loaded model and its own download cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    clear_cache()
    yield
    clear_cache()


def test_default_model_is_shipped_in_the_package() -> None:
    path = Path(default_lid_model())
    assert path.name == "lid.176.ftz"
    assert path.parent.name == "models"
    assert path.is_file()


def test_load_model_returns_one_model_per_process() -> None:
    first = load_model(default_lid_model())
    assert load_model(default_lid_model()) is first


def test_replaced_model_file_is_loaded_again(tmp_path: Path, tiny_fasttext_model: TinyModel) -> None:  # noqa: F811
    path = tmp_path / "model.bin"
    path.write_bytes(Path(tiny_fasttext_model.path).read_bytes())
    first = load_model(str(path))
    path.write_bytes(Path(default_lid_model()).read_bytes())
    os.utime(path, ns=(1, 1))
    second = load_model(str(path))
    assert second is not first
    assert len(second.labels) == 176


def test_labels_are_the_model_labels_without_prefix() -> None:
    labels = check_model(default_lid_model())
    assert len(labels) == 176
    assert {"en", "fr", "de", "zh", "ceb", "yue"} <= set(labels)
    assert "eng" not in labels
    assert labels == model_labels(default_lid_model())


def test_missing_model_names_path_and_reason(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "model.bin"
    with pytest.raises(SpecError, match=r"nowhere/model\.bin.*does not exist"):
        check_model(str(missing))
    with pytest.raises(SpecError, match="does not exist"):
        load_model(str(missing))


def test_a_file_that_is_not_a_model_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "notes.bin"
    path.write_text("these are not the weights you are looking for\n")
    with pytest.raises(SpecError, match=r"notes\.bin.*not a fastText model"):
        check_model(str(path))
    with pytest.raises(SpecError, match="not a fastText model"):
        load_model(str(path))


@pytest.mark.parametrize("keep_bytes", [8, 100, 50_000, 300_000, -1])
def test_a_truncated_model_is_rejected_before_fasttext_reads_it(tmp_path: Path, keep_bytes: int) -> None:
    # fastText's own loader hangs, crashes or silently loads a truncated file; the layout check catches it.
    data = Path(default_lid_model()).read_bytes()
    path = tmp_path / "cut.ftz"
    path.write_bytes(data[:keep_bytes])
    with pytest.raises(SpecError, match=r"cut\.ftz.*truncated or corrupt"):
        check_model(str(path))
    with pytest.raises(SpecError, match="truncated or corrupt"):
        load_model(str(path))


def test_an_unsupervised_model_is_rejected(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join("the cat sat on the mat and the dog ran" for _ in range(50)) + "\n")
    path = tmp_path / "vectors.bin"
    # Trained in a child process, like the engine's own training (see engine/quality.py).
    train = (
        "import sys, fasttext; fasttext.train_unsupervised(sys.argv[1], dim=4, epoch=1, minCount=1, thread=1, "
        "verbose=0).save_model(sys.argv[2])"
    )
    subprocess.run([sys.executable, "-c", train, str(corpus), str(path)], check=True)
    with pytest.raises(SpecError, match="not a supervised"):
        check_model(str(path))


def test_fsspec_url_is_copied_to_the_cache_once(tiny_fasttext_model: TinyModel, tmp_path: Path) -> None:  # noqa: F811
    fs = fsspec.filesystem("memory")
    url = "memory://models/tiny.bin"
    fs.pipe(url, Path(tiny_fasttext_model.path).read_bytes())
    try:
        model = load_model(url)
        assert set(check_model(url)) == {"hq", "cc"}
        cached = list((tmp_path / "cache" / "corpus-engine" / "models").iterdir())
        assert len(cached) == 1
        assert cached[0].name.endswith("-tiny.bin")
        assert load_model(url) is model
        fs.rm(url)  # resolved once per process: no second read of the URL
        assert load_model(url) is model
    finally:
        if fs.exists(url):
            fs.rm(url)


def test_unreadable_url_names_it() -> None:
    with pytest.raises(SpecError, match=r"memory://absent/model\.bin"):
        load_model("memory://absent/model.bin")


def test_steps_travel_by_path_not_by_model(tiny_fasttext_model: TinyModel) -> None:  # noqa: F811
    steps = [LanguageId(), QualityClassifier(model=tiny_fasttext_model.path)]
    for step in steps:
        before = len(pickle.dumps(step))
        step.check()
        load_model(step.model_path if isinstance(step, LanguageId) else step.model)
        assert len(pickle.dumps(step)) == before < 2_000
        assert pickle.loads(pickle.dumps(step)) == step


def test_loaded_model_cache_is_per_process_state() -> None:
    load_model(default_lid_model())
    assert fasttext_loader._models
    clear_cache()
    assert not fasttext_loader._models
