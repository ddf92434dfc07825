"""quality_classifier and train-quality: separation on held-out text, keeping rules, reproducibility, CLI."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.batch import make_batch
from engine.cli import main
from engine.errors import InputError, SpecError
from engine.models.training import TrainConfig, read_texts, train_quality_classifier
from engine.schema import QUALITY_SCORE
from engine.steps.base import build_step
from engine.steps.quality import QualityClassifier, top_fraction_mask
from tests.conftest import shared_corpus
from tests.fasttext_fixtures import TINY_CONFIG, TinyModel, synthetic_texts, tiny_fasttext_model  # noqa: F401
from tests.steps.property_checks import check_step_properties

HELD_OUT_SEED = 99  # generated documents the model never saw (training used other seeds)


def held_out(n: int = 100) -> tuple[list[str], list[str]]:
    return (
        synthetic_texts(positive=True, n=n, seed=HELD_OUT_SEED),
        synthetic_texts(positive=False, n=n, seed=HELD_OUT_SEED + 1),
    )


def test_training_reports_held_out_metrics(tiny_fasttext_model: TinyModel) -> None:  # noqa: F811
    metrics = tiny_fasttext_model.metrics
    assert (metrics.positive_examples, metrics.negative_examples) == (300, 300)
    assert (metrics.train_size, metrics.test_size) == (480, 120)  # 20% held out per class
    assert metrics.f1 >= 0.95
    assert metrics.precision >= 0.95
    assert metrics.recall >= 0.95


def test_step_separates_the_two_classes_on_unseen_text(tiny_fasttext_model: TinyModel) -> None:  # noqa: F811
    good, spam = held_out()
    step = QualityClassifier(model=tiny_fasttext_model.path, min_score=0.5)
    out, verdict = step(make_batch({"text": good + spam}))
    scores = out[QUALITY_SCORE].to_numpy()
    assert scores[:100].min() > scores[100:].max()
    assert verdict.keep[:100].all()
    assert not verdict.keep[100:].any()
    assert set(verdict.reason[100:]) == {"low_score"}
    assert ((scores >= 0) & (scores <= 1)).all()


def test_score_is_the_probability_of_the_positive_label(tiny_fasttext_model: TinyModel) -> None:  # noqa: F811
    good, spam = held_out(20)
    batch = make_batch({"text": good + spam})
    hq, _ = QualityClassifier(model=tiny_fasttext_model.path)(batch)
    cc, verdict = QualityClassifier(model=tiny_fasttext_model.path, positive_label="cc", score_column="spam")(batch)
    assert np.allclose(hq[QUALITY_SCORE].to_numpy() + cc["spam"].to_numpy(), 1.0, atol=1e-4)
    assert verdict.keep.all()  # neither min_score nor keep_top_fraction: annotate only
    assert set(verdict.scores) == {"spam"}


def test_blank_text_scores_zero(tiny_fasttext_model: TinyModel) -> None:  # noqa: F811
    step = QualityClassifier(model=tiny_fasttext_model.path, min_score=0.1)
    out, verdict = step(make_batch({"text": [None, "", "  \n "]}))
    assert out[QUALITY_SCORE].to_pylist() == [0.0, 0.0, 0.0]
    assert list(verdict.reason) == ["low_score"] * 3


def test_keep_top_fraction_keeps_the_best_ceil_f_n_of_a_batch(tiny_fasttext_model: TinyModel) -> None:  # noqa: F811
    good, spam = held_out(10)
    step = QualityClassifier(model=tiny_fasttext_model.path, keep_top_fraction=0.25)
    texts = spam[:7] + good[:3] + spam[7:] + good[3:4]  # 4 good among 14 documents
    out, verdict = step(make_batch({"text": texts}))
    assert verdict.keep.sum() == math.ceil(0.25 * 14) == 4
    scores = out[QUALITY_SCORE].to_numpy()
    assert scores[verdict.keep].min() >= scores[~verdict.keep].max()
    assert {texts[i] for i in np.flatnonzero(verdict.keep)} == set(good[:4])
    assert set(verdict.reason[~verdict.keep]) == {"low_score"}


def test_top_fraction_ties_are_broken_by_id_whatever_the_row_order() -> None:
    scores = np.array([0.5, 0.9, 0.5, 0.5, 0.1])
    ids = pa.array(["d", "a", "c", "b", "e"])
    keep = top_fraction_mask(scores, ids, 0.6)  # ceil(3.0) = 3: "a", then the ties "b", "c"
    assert [i for i, k in zip(ids.to_pylist(), keep, strict=True) if k] == ["a", "c", "b"]
    perm = np.array([4, 2, 0, 3, 1])
    permuted = top_fraction_mask(scores[perm], ids.take(pa.array(perm)), 0.6)
    assert np.array_equal(permuted, keep[perm])
    assert top_fraction_mask(np.zeros(0), pa.array([], pa.string()), 0.5).shape == (0,)


def test_rules_are_exclusive_and_labels_checked(tiny_fasttext_model: TinyModel) -> None:  # noqa: F811
    with pytest.raises(SpecError, match="either min_score or keep_top_fraction"):
        build_step({"type": "quality_classifier", "model": "m.bin", "min_score": 0.5, "keep_top_fraction": 0.1})
    with pytest.raises(SpecError, match="model"):
        build_step({"type": "quality_classifier"})
    step = build_step({"type": "quality_classifier", "model": tiny_fasttext_model.path, "positive_label": "good"})
    with pytest.raises(SpecError, match=r"'good' is not a label.*cc, hq|hq, cc"):
        step.check()
    build_step({"type": "quality_classifier", "model": tiny_fasttext_model.path}).check()


def test_missing_model_fails_validation(tmp_path: Path) -> None:
    step = QualityClassifier(model=str(tmp_path / "quality.bin"))
    with pytest.raises(SpecError, match=r"quality\.bin.*does not exist"):
        step.check()


def test_training_is_reproducible(tmp_path: Path) -> None:
    """thread=1 and a fixed seed: the same data gives the same model bytes and metrics."""
    from tests.fasttext_fixtures import train_tiny_model

    first = train_tiny_model(tmp_path / "a")
    second = train_tiny_model(tmp_path / "b")
    digest = [hashlib.sha256(Path(m.path).read_bytes()).hexdigest() for m in (first, second)]
    assert digest[0] == digest[1]
    assert (first.metrics.precision, first.metrics.recall, first.metrics.f1) == (
        second.metrics.precision,
        second.metrics.recall,
        second.metrics.f1,
    )
    other_seed = train_tiny_model(tmp_path / "c", TINY_CONFIG.model_copy(update={"seed": 8}))
    assert hashlib.sha256(Path(other_seed.path).read_bytes()).hexdigest() != digest[0]


def test_training_on_real_text_separates_english_from_german(tmp_path: Path) -> None:
    """Any binary classifier trains the same way: here English vs German web sentences (Leipzig corpora)."""
    corpus = shared_corpus("lingua-langid-testdata", "English and German web sentences to train a real classifier")
    root = corpus / "language-testdata" / "sentences"
    for code in ("en", "de"):
        lines = (root / f"{code}.txt").read_text(encoding="utf-8").splitlines()[:600]
        pq.write_table(pa.table({"body": lines}), tmp_path / f"{code}.parquet")
    config = TrainConfig(
        text_column="body", positive_label="en", negative_label="de", dim=16, bucket=50_000, epoch=10, lr=0.5
    )
    metrics = train_quality_classifier(
        [str(tmp_path / "en.parquet")], [str(tmp_path / "de.parquet")], str(tmp_path / "out" / "ende.bin"), config
    )
    assert metrics.test_size == 120
    assert metrics.f1 >= 0.9, metrics


def test_sources_read_from_fsspec_folders(memfs: object) -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    for i in range(2):
        with fs.open(f"memory://src/part-{i}.parquet", "wb") as handle:
            pq.write_table(pa.table({"text": [f"doc {i}a", f"doc {i}b"]}), handle)
    assert read_texts("memory://src", "text") == ["doc 0a", "doc 0b", "doc 1a", "doc 1b"]
    assert read_texts("memory://src/part-1.parquet", "text") == ["doc 1a", "doc 1b"]
    with pytest.raises(InputError, match="no column 'body'.*--text-column"):
        read_texts("memory://src", "body")
    with pytest.raises(InputError, match="does not exist or holds no .parquet"):
        read_texts("memory://elsewhere", "text")


def test_sources_without_text_are_refused(tmp_path: Path) -> None:
    pq.write_table(pa.table({"text": ["", None, "  "]}), tmp_path / "blank.parquet")
    pq.write_table(pa.table({"text": ["fine text"]}), tmp_path / "ok.parquet")
    with pytest.raises(InputError, match="positive sources .* no non-blank text"):
        train_quality_classifier([str(tmp_path / "blank.parquet")], [str(tmp_path / "ok.parquet")], str(tmp_path / "m"))


def test_cli_trains_and_prints_metrics(
    tiny_fasttext_model: TinyModel,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    output = tmp_path / "cli.bin"
    argv = ["train-quality", "--positive", tiny_fasttext_model.positive_source]
    argv += ["--negative", tiny_fasttext_model.negative_source, "--output", str(output)]
    argv += ["--dim", "16", "--bucket", "20000", "--epoch", "10", "--lr", "0.5", "--test-fraction", "0.2"]
    argv += ["--seed", "7", "--json"]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["f1"] == tiny_fasttext_model.metrics.f1
    assert printed["positive_examples"] == 300
    assert printed["test_size"] == 120
    assert output.read_bytes() == Path(tiny_fasttext_model.path).read_bytes()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--positive", "/no/such/dir"], "'/no/such/dir' does not exist"),
        (["--text-column", "body"], "has no column 'body'"),
        (["--test-fraction", "1.5"], "--test-fraction"),
    ],
)
def test_cli_bad_inputs_give_one_paragraph(
    tiny_fasttext_model: TinyModel,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    argv = ["train-quality", "--negative", tiny_fasttext_model.negative_source, "--output", str(tmp_path / "m.bin")]
    if "--positive" not in extra:
        argv += ["--positive", tiny_fasttext_model.positive_source]
    assert main(argv + extra) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert err.startswith("error: ")
    assert err.count("\n") == 1


def test_quality_classifier_properties(tiny_fasttext_model: TinyModel) -> None:  # noqa: F811
    check_step_properties(QualityClassifier(model=tiny_fasttext_model.path, min_score=0.5))
    # keep_top_fraction is per batch: kept rows need not pass again, but order must not matter.
    check_step_properties(
        QualityClassifier(model=tiny_fasttext_model.path, keep_top_fraction=0.5), idempotent=False, max_examples=20
    )


def test_carriage_returns_and_unicode_line_breaks_keep_held_out_rows_aligned(tmp_path: Path) -> None:
    """Regression (issue 4): a held-out text with \\r or U+2028 must stay one prediction, not several."""
    good = synthetic_texts(positive=True, n=60, seed=5)
    good = [t.replace(" ", " \r\n ", 2).replace("the", "the\u2028", 1) for t in good]
    spam = [t.replace(" ", "\r", 3) + "\x85" for t in synthetic_texts(positive=False, n=60, seed=6)]
    pq.write_table(pa.table({"text": good}), tmp_path / "good.parquet")
    pq.write_table(pa.table({"text": spam}), tmp_path / "spam.parquet")
    metrics = train_quality_classifier(
        [str(tmp_path / "good.parquet")], [str(tmp_path / "spam.parquet")], str(tmp_path / "m.bin"), TINY_CONFIG
    )
    assert metrics.test_size == 24
    assert metrics.f1 >= 0.9


def test_training_after_a_quantized_model_was_used_and_dropped(
    tiny_fasttext_model: TinyModel,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Regression (issue 4): with fasttext-numpy2-wheel 0.9.2, training in a process that freed a quantized
    model (lid.176.ftz) failed with "Encountered NaN."; training now runs in a child process."""
    import gc

    from engine.models.loader import clear_cache, default_lid_model, load_model
    from tests.fasttext_fixtures import train_tiny_model

    load_model(default_lid_model()).predict(["hello world"], k=1)
    clear_cache()
    gc.collect()
    again = train_tiny_model(tmp_path)
    assert Path(again.path).read_bytes() == Path(tiny_fasttext_model.path).read_bytes()


def test_quantized_model_is_smaller_loads_and_scores_like_the_full_one(
    tiny_fasttext_model: TinyModel,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Issue 14: fastText loads a private copy per worker, so the lever on memory is a smaller model (`.ftz`)."""
    config = TINY_CONFIG.model_copy(update={"quantize": True})
    output = tmp_path / "tiny.ftz"
    metrics = train_quality_classifier(
        [tiny_fasttext_model.positive_source], [tiny_fasttext_model.negative_source], str(output), config
    )
    full_size = Path(tiny_fasttext_model.path).stat().st_size
    assert output.stat().st_size < full_size / 3
    assert metrics.f1 >= 0.95  # measured on the quantized model, as saved
    positives, negatives = held_out()
    batch = make_batch({"text": positives + negatives})
    full = QualityClassifier(model=tiny_fasttext_model.path)(batch)[0][QUALITY_SCORE].to_numpy()
    quantized = QualityClassifier(model=str(output))(batch)[0][QUALITY_SCORE].to_numpy()
    assert np.abs(full - quantized).max() < 0.2
    assert quantized[: len(positives)].min() > quantized[len(positives) :].max()  # still separates the classes
