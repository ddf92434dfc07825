"""Training binary fastText classifiers (quality, toxicity, domain) from positive and negative Parquet sources.

DCLM's quality stage scores documents with a fastText classifier trained on `__label__hq` examples
(OpenHermes-2.5, ELI5 answers) against `__label__cc` (random Common Crawl); `train_quality_classifier`
trains such a model from any two sets of Parquet sources, and the `quality_classifier` step
(engine/steps/quality.py) applies it. CLI: `corpus-engine train-quality`.
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from engine.errors import InputError, SpecError
from engine.io.paths import filesystem, list_files
from engine.models.loader import DEFAULT_MAX_CHARS, LABEL_PREFIX, import_fasttext, prepare_texts
from engine.schema import TEXT

DEFAULT_POSITIVE_LABEL = "hq"  # DCLM's label names (mlfoundations/dclm baselines/README.md)
DEFAULT_NEGATIVE_LABEL = "cc"


class TrainConfig(BaseModel):
    """How `train_quality_classifier` reads, splits and trains.

    Hyper-parameter defaults are DCLM's OH-2.5+ELI5 classifier: fastText's supervised defaults
    (lr 0.1, dim 100, ws 5, epoch 5, minCount 1, softmax loss) plus word bigrams, `wordNgrams 2`
    (mlfoundations/dclm `baselines/README.md`, "Training your own fasttext classifiers", and
    `baselines/train_fasttext_classifier.py`). Unlike DCLM (all cores), training uses one thread by
    default, which with the fixed seed makes the model and its metrics reproducible.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    text_column: str = TEXT
    positive_label: str = DEFAULT_POSITIVE_LABEL
    negative_label: str = DEFAULT_NEGATIVE_LABEL
    test_fraction: float = Field(default=0.1, ge=0, lt=1)
    max_examples_per_class: int | None = Field(default=None, ge=1)
    seed: int = Field(default=42, ge=0)
    max_chars: int | None = Field(default=DEFAULT_MAX_CHARS, ge=1)
    lr: float = Field(default=0.1, gt=0)
    dim: int = Field(default=100, ge=1)
    ws: int = Field(default=5, ge=1)
    epoch: int = Field(default=5, ge=1)
    min_count: int = Field(default=1, ge=1)
    word_ngrams: int = Field(default=2, ge=1)
    bucket: int = Field(default=2_000_000, ge=0)
    minn: int = Field(default=0, ge=0)
    maxn: int = Field(default=0, ge=0)
    loss: Literal["softmax", "hs", "ns", "ova"] = "softmax"
    thread: int = Field(default=1, ge=1)
    quantize: bool = Field(
        default=False,
        description="Save the model product-quantized by fastText (`.ftz`): ~8x less memory in every worker "
        "that loads it (fastText cannot share one loaded copy between processes); scores move slightly.",
    )


@dataclass(frozen=True)
class TrainMetrics:
    """What training reports: examples used, split sizes, and held-out metrics for the positive class."""

    model: str
    positive_examples: int
    negative_examples: int
    train_size: int
    test_size: int
    precision: float
    recall: float
    f1: float
    accuracy: float

    def lines(self) -> list[str]:
        """Human-readable summary, one fact per line."""
        return [
            f"model: {self.model}",
            f"examples: {self.positive_examples} positive, {self.negative_examples} negative",
            f"split: {self.train_size} train, {self.test_size} held out",
            f"held-out: precision {self.precision:.4f}  recall {self.recall:.4f}  F1 {self.f1:.4f}  "
            f"accuracy {self.accuracy:.4f}",
        ]


def read_texts(source: str, text_column: str, storage_options: dict[str, Any] | None = None) -> list[str]:
    """Texts of `text_column` from a Parquet file, a folder of them (recursive), or a glob; fsspec URLs.

    Raises:
        InputError: the path matches no Parquet file, a file cannot be read, or lacks the column.
    """
    options = storage_options or {}
    try:
        fs, root = filesystem(source, options)
        if fs.isfile(root):
            paths = [root]
        elif fs.isdir(root):
            paths = [filesystem(url, options)[1] for url in list_files(source, options, "**/*.parquet")]
        else:
            paths = sorted(p for p in fs.glob(root) if fs.isfile(p))
    except (OSError, ValueError) as error:
        msg = f"{source!r} cannot be listed: {error}"
        raise InputError(msg) from None
    if not paths:
        msg = f"{source!r} does not exist or holds no .parquet file; give a Parquet file, a folder or a glob"
        raise InputError(msg)
    texts: list[str] = []
    for path in paths:
        try:
            schema = pq.read_schema(path, filesystem=fs)
            if text_column not in schema.names:
                msg = (
                    f"{path!r} has no column {text_column!r} (columns: {', '.join(schema.names)}); "
                    "name the text column with --text-column"
                )
                raise InputError(msg)
            table = pq.read_table(path, columns=[text_column], filesystem=fs, page_checksum_verification=True)
            column = table[text_column]
        except InputError:
            raise
        except (OSError, ValueError, pa.ArrowException) as error:
            msg = f"{path!r} cannot be read as Parquet: {error}"
            raise InputError(msg) from None
        texts.extend(column.to_pylist())
    return texts


def _clean(texts: list[Any], max_chars: int | None) -> list[str]:
    """Training lines: text with newlines as spaces, cut to `max_chars`, blank and non-string dropped."""
    batch = pa.table({TEXT: pa.array([t if isinstance(t, str) else None for t in texts], type=pa.large_string())})
    prepared, blank = prepare_texts(batch, max_chars)
    return [t for t, is_blank in zip(prepared, blank, strict=True) if not is_blank]


def _split(texts: list[str], config: TrainConfig, rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """Sample (if capped), shuffle and split one class into train and held-out texts."""
    order = rng.permutation(len(texts))
    if config.max_examples_per_class is not None:
        order = order[: config.max_examples_per_class]
    chosen = [texts[i] for i in order]
    held_out = int(round(len(chosen) * config.test_fraction))
    return chosen[held_out:], chosen[:held_out]


def train_quality_classifier(
    positive: list[str],
    negative: list[str],
    output: str,
    config: TrainConfig | None = None,
    storage_options: dict[str, Any] | None = None,
) -> TrainMetrics:
    """Train a binary fastText classifier from positive and negative Parquet sources and save it.

    Each class is shuffled with `config.seed` and split (the same fraction held out per class); the
    model is trained on the rest and evaluated on the held-out texts. With `thread=1` the same data
    and seed give the same model bytes and metrics.

    Args:
        positive: Parquet files, folders or globs (any fsspec URL) of positive examples.
        negative: the same, for negative examples.
        output: where to write the model (`.bin`; any fsspec URL).
        config: columns, labels, split, and fastText hyper-parameters (DCLM's by default).
        storage_options: fsspec options for the sources and the output.

    Raises:
        InputError: a source is missing or unreadable, lacks the text column, or yields no text.
    """
    config = config or TrainConfig()
    if config.positive_label == config.negative_label:
        msg = f"positive and negative labels are both {config.positive_label!r}; give two different labels"
        raise SpecError(msg)
    classes = {}
    for name, sources in (("positive", positive), ("negative", negative)):
        if not sources:
            msg = f"no {name} source given"
            raise InputError(msg)
        texts = [
            t
            for source in sources
            for t in _clean(read_texts(source, config.text_column, storage_options), config.max_chars)
        ]
        if not texts:
            msg = f"the {name} sources {sources} hold no non-blank text in column {config.text_column!r}"
            raise InputError(msg)
        classes[name] = texts
    rng = np.random.default_rng(config.seed)
    pos_train, pos_test = _split(classes["positive"], config, rng)
    neg_train, neg_test = _split(classes["negative"], config, rng)
    pos, neg = LABEL_PREFIX + config.positive_label, LABEL_PREFIX + config.negative_label
    rows = [f"{pos} {t}" for t in pos_train] + [f"{neg} {t}" for t in neg_train]
    rows = [rows[i] for i in rng.permutation(len(rows))]
    import_fasttext()
    test_texts = pos_test + neg_test
    truth = np.array([True] * len(pos_test) + [False] * len(neg_test), dtype=bool)
    with tempfile.TemporaryDirectory(prefix="train-quality-") as workdir:
        train_file = os.path.join(workdir, "train.txt")
        with open(train_file, "w", encoding="utf-8", newline="") as handle:
            handle.write("\n".join(rows) + "\n")
        test_file = os.path.join(workdir, "test.txt")
        with open(test_file, "w", encoding="utf-8", newline="") as handle:
            handle.write("".join(t + "\n" for t in test_texts))
        local_model = os.path.join(workdir, "model.bin")
        predicted_labels = _train_in_child(config, train_file, test_file, local_model)
        _upload(local_model, output, storage_options or {})
    predicted = np.array([label == pos for label in predicted_labels], dtype=bool)
    if len(predicted) != len(truth):
        msg = f"fastText returned {len(predicted)} predictions for {len(truth)} held-out texts"
        raise RuntimeError(msg)
    true_pos = int(np.sum(predicted & truth))
    precision = true_pos / max(int(predicted.sum()), 1)
    recall = true_pos / max(int(truth.sum()), 1)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    accuracy = float(np.mean(predicted == truth)) if len(truth) else 0.0
    return TrainMetrics(
        model=output,
        positive_examples=len(pos_train) + len(pos_test),
        negative_examples=len(neg_train) + len(neg_test),
        train_size=len(rows),
        test_size=len(test_texts),
        precision=precision,
        recall=recall,
        f1=f1,
        accuracy=accuracy,
    )


# Training runs in a fresh Python process. fastText (as built by fasttext-numpy2-wheel 0.9.2) can read
# stale memory during training in a process that loaded and freed another model (a quantized one such
# as lid.176.ftz): training then fails with "Encountered NaN." or gives different weights run to run.
# A clean child process makes training independent of what the caller did before, hence reproducible.
_TRAIN_CHILD = """
import json, sys
import fasttext
job = json.loads(sys.argv[1])
model = fasttext.train_supervised(input=job["train"], verbose=0, **job["params"])
if job["quantize"]:
    model.quantize(input=job["train"], qnorm=True, retrain=False, thread=job["params"]["thread"])
model.save_model(job["model"])
with open(job["test"], encoding="utf-8", newline="") as handle:
    lines = handle.read().split("\\n")[:-1]
labels = model.predict(lines, k=1)[0] if lines else []
with open(job["predictions"], "w", encoding="utf-8") as handle:
    json.dump([row[0] if row else "" for row in labels], handle)
"""


def _train_in_child(config: TrainConfig, train_file: str, test_file: str, model_file: str) -> list[str]:
    """Train with fastText in a child process; the top label it predicts for each held-out line."""
    import json
    import subprocess

    params = {
        "lr": config.lr,
        "dim": config.dim,
        "ws": config.ws,
        "epoch": config.epoch,
        "minCount": config.min_count,
        "wordNgrams": config.word_ngrams,
        "bucket": config.bucket,
        "minn": config.minn,
        "maxn": config.maxn,
        "loss": config.loss,
        "thread": config.thread,
        "seed": config.seed,
    }
    predictions = model_file + ".predictions.json"
    job = {
        "train": train_file,
        "test": test_file,
        "model": model_file,
        "predictions": predictions,
        "params": params,
        "quantize": config.quantize,
    }
    done = subprocess.run(
        [sys.executable, "-c", _TRAIN_CHILD, json.dumps(job)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        msg = f"fastText training failed: {last}; try a lower --lr (now {config.lr}) or check the data"
        raise InputError(msg)
    with open(predictions, encoding="utf-8") as handle:
        labels: list[str] = json.load(handle)
    return labels


def _upload(local: str, output: str, storage_options: dict[str, Any]) -> None:
    """Write the trained model to `output` (local path or fsspec URL), creating parent folders."""
    try:
        fs, path = filesystem(output, storage_options)
        parent = path.rsplit("/", 1)[0] if "/" in path else ""
        if parent:
            fs.makedirs(parent, exist_ok=True)
        fs.put_file(local, path)
    except (OSError, ValueError) as error:
        msg = f"cannot write the model to {output!r}: {error}"
        raise InputError(msg) from None
