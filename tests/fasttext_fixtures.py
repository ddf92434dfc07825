"""`tiny_fasttext_model`: a binary fastText classifier trained at test time on generated text.

Two classes with distinct vocabularies over shared function words: "hq" sentences about science and
"cc" sentences of web spam. Seeded, so every run trains on the same lines (no downloads).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.models.training import TrainConfig, TrainMetrics, train_quality_classifier

SEED = 20240611
FUNCTION_WORDS = "the a of and to in is that for on with as it was by this".split()
POSITIVE_WORDS = (
    "research experiment theory measurement analysis evidence hypothesis observation physics chemistry "
    "biology protein molecule equation velocity energy climate temperature ocean history century "
    "population language grammar literature museum archive library professor university study"
).split()
NEGATIVE_WORDS = (
    "click buy free cheap discount casino bonus winner offer subscribe login password download deal "
    "price shipping coupon viagra loan crypto bitcoin jackpot promo limited hurry sale cart checkout "
    "unsubscribe spam"
).split()
# Small model: the DCLM defaults (dim 100, 2M buckets) would write an 800 MB file.
TINY_CONFIG = TrainConfig(dim=16, bucket=20_000, epoch=10, lr=0.5, test_fraction=0.2, seed=7)


def synthetic_texts(*, positive: bool, n: int, seed: int) -> list[str]:
    """`n` generated documents of one class (seeded): 12-30 words, 60% class words, 40% function words."""
    rng = np.random.default_rng(seed)
    vocabulary = POSITIVE_WORDS if positive else NEGATIVE_WORDS
    docs = []
    for _ in range(n):
        length = int(rng.integers(12, 31))
        words = [
            str(rng.choice(vocabulary)) if rng.random() < 0.6 else str(rng.choice(FUNCTION_WORDS))
            for _ in range(length)
        ]
        docs.append(" ".join(words).capitalize() + ".")
    return docs


@dataclass(frozen=True)
class TinyModel:
    """A trained tiny classifier: its path, labels, training metrics, and the sources it came from."""

    path: str
    positive_label: str
    negative_label: str
    metrics: TrainMetrics
    positive_source: str
    negative_source: str


def train_tiny_model(directory: Path, config: TrainConfig = TINY_CONFIG) -> TinyModel:
    """Write the generated classes as Parquet under `directory` and train the tiny model from them."""
    positive = directory / "positive.parquet"
    negative = directory / "negative"
    negative.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"text": synthetic_texts(positive=True, n=300, seed=SEED)}), positive)
    negatives = synthetic_texts(positive=False, n=300, seed=SEED + 1)
    pq.write_table(pa.table({"text": negatives[:150]}), negative / "part-0.parquet")
    pq.write_table(pa.table({"text": negatives[150:]}), negative / "part-1.parquet")
    output = directory / "tiny.bin"
    metrics = train_quality_classifier([str(positive)], [str(negative)], str(output), config)
    return TinyModel(
        path=str(output),
        positive_label=config.positive_label,
        negative_label=config.negative_label,
        metrics=metrics,
        positive_source=str(positive),
        negative_source=str(negative),
    )


@pytest.fixture(scope="session")
def tiny_fasttext_model(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    """A binary fastText classifier (`hq` vs `cc`) trained once per session on generated text."""
    return train_tiny_model(tmp_path_factory.mktemp("tiny-fasttext"))
